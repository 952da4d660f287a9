import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db

BASE_DIR = Path(settings.BASE_DIR)


def _script_src(policy: str) -> str:
    for part in policy.split(";"):
        part = part.strip()
        if part.startswith("script-src"):
            return part
    return ""


@pytest.mark.parametrize(
    "url", ["/login/", "/projects/", "/projects/{slug}/", "/api/projects/", "/api/docs/"]
)
def test_it_sends_a_csp_without_inline_script(client, admin_user, project, url):
    if url != "/login/":
        client.force_login(admin_user)
    response = client.get(url.format(slug=project.slug))
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert _script_src(policy) == "script-src 'self'"
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert response["X-Frame-Options"] == "DENY"


def test_it_loads_the_api_docs_only_from_this_site(client, admin_user):
    client.force_login(admin_user)
    html = client.get("/api/docs/").content.decode()
    assert "<script>" not in html and "<style>" not in html
    assert "http://" not in html and "https://" not in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    # The vendored Swagger UI is served by the static files, not a CDN.
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html


def _production_env(**extra) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "MEDCOT_", "DATABASE_"))
    }
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="medcot.example.org",
        MEDCOT_HTTPS="true",
        MEDCOT_VAR_DIR=str(BASE_DIR / "var" / "deploy-check"),
        DJANGO_SETTINGS_MODULE="medcot.settings",
        **extra,
    )
    return env


def test_it_passes_check_deploy_in_production():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=_production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_refuses_to_start_in_production_without_a_secret_key():
    env = _production_env()
    env.pop("SECRET_KEY")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
