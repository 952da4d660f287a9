import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def test_it_locks_a_username_out_after_five_failures(reviewer, settings):
    settings.MEDCOT_LOGIN_FAILURE_LIMIT = 5
    client = Client()
    for _ in range(5):
        response = client.post("/login/", {"username": "reviewer", "password": "wrong"})
        assert response.status_code == 200
    # Even the right password is refused now, so guessing gets no feedback.
    response = client.post("/login/", {"username": "reviewer", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert int(response["Retry-After"]) == settings.MEDCOT_LOGIN_FAILURE_WINDOW
    assert "_auth_user_id" not in client.session


def test_it_lets_another_user_sign_in_meanwhile(reviewer, admin_user):
    client = Client()
    for _ in range(5):
        client.post("/login/", {"username": "reviewer", "password": "wrong"})
    response = client.post("/login/", {"username": "admin", "password": PASSWORD})
    assert response.status_code == 302


def test_it_counts_only_failures(reviewer):
    client = Client()
    for _ in range(4):
        client.post("/login/", {"username": "reviewer", "password": "wrong"})
    assert client.post("/login/", {"username": "reviewer", "password": PASSWORD}).status_code == 302
    client.logout()
    for _ in range(4):
        client.post("/login/", {"username": "reviewer", "password": "wrong"})
    assert client.post("/login/", {"username": "reviewer", "password": PASSWORD}).status_code == 302


def test_it_throttles_the_api_token_endpoint_too(reviewer):
    client = Client()
    for _ in range(5):
        response = client.post(
            "/api/auth/token/",
            {"username": "reviewer", "password": "wrong"},
            content_type="application/json",
        )
        assert response.status_code == 400
    response = client.post(
        "/api/auth/token/",
        {"username": "reviewer", "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"


def test_it_gives_a_token_for_the_right_password(reviewer):
    response = Client().post("/api/auth/token/", {"username": "reviewer", "password": PASSWORD})
    assert response.status_code == 200
    token = response.json()["token"]
    api = Client(headers={"Authorization": f"Token {token}"})
    assert api.get("/api/projects/").status_code == 200
