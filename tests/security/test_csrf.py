"""CSRF on every browser write: each route of the site, POSTed by a signed-in admin without a
token, is refused (or does not accept POST at all)."""

import pytest
from django.test import Client

from tests.security.test_permission_matrix import DEFAULT_ARGS, EXPECTED, _fill, all_routes

pytestmark = pytest.mark.django_db

# The token endpoint takes a password, not a session, so there is no session to ride on; the
# API's catch-all 404 writes nothing.
NO_SESSION = {"api/auth/token/", "api/^[\\s\\S]*$"}


def test_it_refuses_every_post_without_a_csrf_token(admin_user, project):
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.force_login(admin_user)
    values = {**DEFAULT_ARGS, "slug": project.slug, "pk": "1"}
    accepted = []
    for route in all_routes():
        if route in NO_SESSION:
            continue
        url = _fill(route, values)
        response = client.post(url, {"name": "x"})
        if response.status_code not in {403, 405}:
            accepted.append(f"{url} → {response.status_code}")
    assert not accepted, f"POST accepted without a CSRF token: {accepted}"
    assert len(EXPECTED) > 10


def test_it_accepts_a_browser_write_with_the_csrf_token(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    page = client.get("/projects/new/")
    token = page.cookies["csrftoken"].value
    response = client.post(
        "/projects/new/",
        {
            "name": "Neuro",
            "slug": "neuro",
            "language": "en",
            "expansion_factor": 10,
            "reanswer_attempts": 5,
            "panel_size": 2,
            "consensus_minimum": 2,
            "csrfmiddlewaretoken": token,
        },
    )
    assert response.status_code == 302


def test_it_puts_the_csrf_token_in_htmx_headers(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    html = client.get("/projects/").content.decode()
    assert "hx-headers=" in html and "X-CSRFToken" in html
