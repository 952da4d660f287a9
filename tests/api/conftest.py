import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


def token_client(user) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def admin_api(admin_user):
    return token_client(admin_user)


@pytest.fixture
def reviewer_api(reviewer):
    return token_client(reviewer)


@pytest.fixture
def outsider_api(outsider):
    return token_client(outsider)


@pytest.fixture
def anon_api():
    return APIClient()


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # The user fixtures hash a password each; no test here is about the hashing itself.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
