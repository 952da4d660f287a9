import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from medcot.lifecycle import Status
from tests.factories import ItemFactory


def token_client(user) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def assert_error(response, status: int, code: str) -> dict:
    """The response is an error in the API's one shape; returns its details."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]["details"]


@pytest.fixture
def admin_api(admin_user):
    return token_client(admin_user)


@pytest.fixture
def reviewer_api(reviewer):
    return token_client(reviewer)


@pytest.fixture
def expert_api(expert_a):
    return token_client(expert_a)


@pytest.fixture
def outsider_api(outsider):
    return token_client(outsider)


@pytest.fixture
def anon_api():
    return APIClient()


@pytest.fixture
def queued(project):
    """Three items waiting for first-pass review."""
    return [ItemFactory(project=project, status=Status.FIRST_REVIEW) for _ in range(3)]


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # The user fixtures hash a password each; no test here is about the hashing itself.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
