"""The LLM key is read from the environment and never shown: no page, fragment, API answer or
schema carries it, whoever asks."""

import zipfile

import pytest
from django.test import Client

from generation.models import Run
from generation.services import run_start
from medcot.imports.formats import ImportOptions
from medcot.imports.service import import_batch_create
from tests.factories import ItemFactory
from tests.security.test_permission_matrix import DEFAULT_ARGS, EXPECTED, _fill, all_routes

pytestmark = pytest.mark.django_db

KEY = "sk-test-7f3c1a9e5b2d4c6e8a0b1c2d3e4f5a6b"


def test_it_never_shows_the_llm_key(monkeypatch, admin_user, reviewer, project, settings):
    monkeypatch.setenv("MEDCOT_LLM_API_KEY", KEY)
    settings.MEDCOT_LLM_BASE_URL = "http://127.0.0.1:9/v1"
    # The default LLM profile is made from the environment when the run starts.
    context = {
        "item": ItemFactory(project=project).pk,
        "batch": import_batch_create(
            project=project, data=b"x", file_name="a.jsonl", options=ImportOptions()
        ).pk,
        "run": run_start(project=project, stage="cot", actor=admin_user).pk,
    }
    context["profile"] = Run.objects.get(pk=context["run"]).profile_id
    values = {**DEFAULT_ARGS, "slug": project.slug}
    leaks = []
    pages = 0
    for user in (admin_user, reviewer):
        # Pages that fail are the matrix's business; here only what they send back matters.
        client = Client(raise_request_exception=False)
        client.force_login(user)
        for route in all_routes():
            if route.startswith("django-admin/"):
                continue
            spec = EXPECTED.get(route, {})
            pk = {name: context[key] for name, key in spec.get("args", {}).items()}
            response = client.get(_fill(route, {**values, "pk": context["item"], **pk}))
            pages += 1
            body = response.content if not response.streaming else b"".join(response)
            if KEY.encode() in body or KEY in str(response.headers):
                leaks.append(route)
    assert not leaks, f"The LLM key appears on: {leaks}"
    assert pages >= 2 * len(EXPECTED) - 10


def test_it_never_writes_the_llm_key_into_a_release(
    monkeypatch, settings, tmp_path, project, reviewer, expert_a, expert_b
):
    from review.releases.services import release_build, release_create
    from tests.releases.conftest import reviewed_item

    monkeypatch.setenv("MEDCOT_LLM_API_KEY", KEY)
    settings.MEDIA_ROOT = tmp_path / "media"
    reviewed_item(project=project, reviewer=reviewer, experts=[expert_a, expert_b])
    release = release_create(project=project, version="v1", actor=None, dispatch=False)
    release = release_build(release_id=release.pk)
    assert release.state == "built"
    files = [p for p in (tmp_path / "media").rglob("*") if p.is_file()]
    assert any(p.suffix == ".zip" for p in files)
    leaks = [str(p) for p in files if KEY.encode() in p.read_bytes()]
    # The zip compresses its members, so look inside it too.
    for archive in (p for p in files if p.suffix == ".zip"):
        with zipfile.ZipFile(archive) as bundle:
            leaks += [
                f"{archive.name}:{name}"
                for name in bundle.namelist()
                if KEY.encode() in bundle.read(name)
            ]
    assert not leaks
