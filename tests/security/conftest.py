import pytest


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # The user fixtures hash a password each; no test here is about the hashing itself.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
