"""The people and project of these tests have Chinese names, as a Chinese team's would: what is
left in English on a page is then interface text, not data."""

import pytest

from medcot.roles import ADMIN, EXPERT, REVIEWER
from review.services import person_create

# Simulators with particular faults, for the endpoint test in Chinese.
from tests.generation.conftest import start_simulator  # noqa: F401

# The permission matrix's context (an item, an import batch, a run) and its signed-in clients.
from tests.security.test_permission_matrix import clients, context  # noqa: F401


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _person(username: str, roles: list[str], specialties: list[str] | None = None):
    return person_create(
        username=username,
        password="correct horse battery staple",
        roles=roles,
        display_name=username,
        specialties=specialties or [],
    )


@pytest.fixture
def reviewer(db):
    return _person("审核员甲", [REVIEWER])


@pytest.fixture
def expert_a(db):
    return _person("专家甲", [EXPERT], ["心血管内科"])


@pytest.fixture
def expert_b(db):
    return _person("专家乙", [EXPERT], ["心血管内科", "神经内科"])


@pytest.fixture
def admin_user(db):
    return _person("管理员", [ADMIN])


@pytest.fixture
def outsider(db):
    return _person("访客", [])


@pytest.fixture
def project(db):
    from tests.factories import ProjectFactory

    return ProjectFactory(name="心血管内科题库", slug="xinxueguan", language="zh")
