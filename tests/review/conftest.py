import pytest
from django.test import override_settings

from medcot.lifecycle import Status
from medcot.roles import EXPERT, REVIEWER
from review.services import person_create
from tests.factories import ItemFactory


@pytest.fixture(autouse=True)
def _no_undo_delay():
    """Most tests want a submission to take effect at once; the undo tests turn it back on."""
    with override_settings(REVIEW_UNDO_SECONDS=0):
        yield


@pytest.fixture
def reviewer_b(db):
    return person_create(
        username="reviewer_b", password="correct horse battery staple", roles=[REVIEWER]
    )


@pytest.fixture
def expert_d(db):
    return person_create(
        username="expert_d",
        password="correct horse battery staple",
        roles=[EXPERT],
        specialties=["Cardiology"],
    )


@pytest.fixture
def make_item(project):
    def make(status=Status.FIRST_REVIEW, **kwargs):
        return ItemFactory(project=project, status=status, **kwargs)

    return make
