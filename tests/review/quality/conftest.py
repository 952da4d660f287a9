import pytest
from django.test import override_settings

from medcot.lifecycle import Status
from review.quality.controls import control_create_from_item
from tests.factories import ItemFactory


@pytest.fixture(autouse=True)
def _no_undo_delay():
    with override_settings(REVIEW_UNDO_SECONDS=0):
        yield


@pytest.fixture
def make_item(project):
    def make(status=Status.FIRST_REVIEW, **kwargs):
        return ItemFactory(project=project, status=status, **kwargs)

    return make


@pytest.fixture
def make_control(project, admin_user):
    """A control copied from an approved (valid) or discarded (not valid) item."""

    def make(stage=Status.FIRST_REVIEW, valid=True):
        source = ItemFactory(project=project, status=Status.APPROVED if valid else Status.DISCARDED)
        return control_create_from_item(admin=admin_user, item=source, stage=stage)

    return make
