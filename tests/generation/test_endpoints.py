"""LLM endpoints for project admins, in the browser and the API: create, edit, disable, and a
live test that reports latency, reasoning style, the structured-output mode the server
honours (and sets it), or the error in plain words."""

import pytest
from django.urls import reverse

from generation.models import LLMProfile
from generation.services import GenerationError, profile_test, run_start
from tests.api.conftest import token_client
from tests.generation.conftest import make_profile

FIELDS = {
    "name": "deepseek",
    "base_url": "https://api.deepseek.com/v1",
    "model": "deepseek-reasoner",
    "alternate_models": "deepseek-chat, ",
    "api_key_env": "DEEPSEEK_API_KEY",
    "structured_output": "none",
    "max_in_flight": "32",
    "timeout_seconds": "600",
    "max_retries": "6",
    "price_input_per_m": "0.55",
    "price_output_per_m": "2.19",
    "enabled": "on",
}


@pytest.fixture
def admin(client, admin_user):
    client.force_login(admin_user)
    return client


def test_it_adds_an_endpoint_in_the_browser(admin):
    page = admin.get(reverse("generation_llm"))
    assert b'id="endpoint-add"' in page.content
    assert b"django-admin" not in page.content
    assert admin.get(reverse("generation_endpoint_create")).status_code == 200
    response = admin.post(reverse("generation_endpoint_create"), FIELDS)
    assert response.status_code == 302
    profile = LLMProfile.objects.get(name="deepseek")
    assert profile.alternate_models == ["deepseek-chat"]
    assert profile.api_key_env == "DEEPSEEK_API_KEY" and profile.enabled
    assert b"deepseek-reasoner" in admin.get(reverse("generation_llm")).content


@pytest.mark.parametrize(
    ("key_field", "message"),
    [
        ("sk-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c", "looks like a key"),
        ("my key", "name of the environment variable"),
    ],
)
def test_it_refuses_a_key_where_the_variables_name_belongs(admin, key_field, message):
    response = admin.post(
        reverse("generation_endpoint_create"), FIELDS | {"api_key_env": key_field}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not LLMProfile.objects.filter(name="deepseek").exists()


def test_it_edits_and_disables_an_endpoint_and_a_disabled_one_starts_no_run(admin, project):
    profile = make_profile("http://127.0.0.1:9/v1", name="other", is_default=False)
    response = admin.post(
        reverse("generation_endpoint_edit", args=[profile.pk]),
        FIELDS | {"name": "other", "model": "renamed-model", "max_in_flight": "4"},
    )
    assert response.status_code == 302
    profile.refresh_from_db()
    assert (profile.model, profile.max_in_flight) == ("renamed-model", 4)

    admin.post(reverse("generation_endpoint_enabled", args=[profile.pk]), {"enabled": "0"})
    profile.refresh_from_db()
    assert not profile.enabled
    with pytest.raises(GenerationError, match="disabled"):
        run_start(project=project, stage="cot", profile=profile)
    runs_page = admin.get(reverse("generation_runs", args=[project.slug])).content.decode()
    assert "renamed-model" not in runs_page  # not offered when starting a run

    admin.post(reverse("generation_endpoint_enabled", args=[profile.pk]), {"enabled": "1"})
    profile.refresh_from_db()
    assert profile.enabled


def test_the_default_endpoint_cannot_be_disabled(admin, sim_profile):
    response = admin.post(
        reverse("generation_endpoint_enabled", args=[sim_profile.pk]), {"enabled": "0"}, follow=True
    )
    assert "cannot be disabled" in response.content.decode()
    sim_profile.refresh_from_db()
    assert sim_profile.enabled


@pytest.mark.parametrize("who", ["reviewer", "expert_a", "outsider"])
def test_only_admins_reach_the_endpoint_pages(client, request, who, sim_profile):
    client.force_login(request.getfixturevalue(who))
    assert client.get(reverse("generation_endpoint_create")).status_code == 403
    assert client.post(reverse("generation_endpoint_create"), FIELDS).status_code == 403
    assert (
        client.post(reverse("generation_endpoint_test", args=[sim_profile.pk])).status_code == 403
    )
    assert not LLMProfile.objects.filter(name="deepseek").exists()


def test_writes_refuse_get(admin, sim_profile):
    assert admin.get(reverse("generation_endpoint_test", args=[sim_profile.pk])).status_code == 405
    assert (
        admin.get(reverse("generation_endpoint_enabled", args=[sim_profile.pk])).status_code == 405
    )


@pytest.mark.parametrize(
    ("honours", "found"),
    [("json_schema,json_object", "json_schema"), ("json_object", "json_object"), ("none", "none")],
)
def test_the_test_finds_the_mode_the_server_honours_and_sets_it(
    admin, start_simulator, db, honours, found
):
    sim = start_simulator(structured=honours, reasoning="think")
    profile = make_profile(
        sim.base_url, structured_output="json_object" if found != "json_object" else "none"
    )
    response = admin.post(
        reverse("generation_endpoint_test", args=[profile.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-test-result="ok"' in html
    assert f"structured output: {found} (set)" in html
    assert "reasoning: think tags" in html
    profile.refresh_from_db()
    assert profile.structured_output == found
    assert profile.last_test["ok"] and profile.last_test["latency_ms"] is not None


def test_the_test_reports_a_refused_key_in_plain_words(start_simulator, db, monkeypatch):
    sim = start_simulator(api_key="the-right-key")
    monkeypatch.setenv("H14_TEST_KEY", "a-wrong-key")
    profile = make_profile(sim.base_url, api_key_env="H14_TEST_KEY")
    result = profile_test(profile=profile)
    assert not result["ok"]
    assert "refused the API key (HTTP 401)" in result["error"]
    assert "H14_TEST_KEY" in result["error"]
    profile.refresh_from_db()
    assert profile.last_test["ok"] is False


def test_the_test_reports_an_unreachable_server_in_plain_words(db):
    profile = make_profile("http://127.0.0.1:9/v1")
    result = profile_test(profile=profile)
    assert not result["ok"]
    assert "Could not reach http://127.0.0.1:9/v1" in result["error"]


def test_the_test_reports_a_server_that_answers_empty(start_simulator, db):
    sim = start_simulator(rate_empty=1.0)
    result = profile_test(profile=make_profile(sim.base_url))
    assert not result["ok"]
    assert "empty reply" in result["error"] or "error page" in result["error"]


# -- the API ------------------------------------------------------------------------------


API_FIELDS = {
    "name": "vllm",
    "base_url": "http://gpu-box:8000/v1",
    "model": "qwen",
    "api_key_env": "VLLM_KEY",
    "structured_output": "json_object",
}


def test_the_api_lists_creates_edits_and_disables_endpoints(admin_user, sim_profile):
    api = token_client(admin_user)
    listed = api.get("/api/llm/endpoints/")
    assert listed.status_code == 200
    assert [e["name"] for e in listed.json()] == ["sim"]
    created = api.post("/api/llm/endpoints/", API_FIELDS, format="json")
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    assert created["Location"].endswith(f"/llm/endpoints/{pk}/")
    changed = api.patch(f"/api/llm/endpoints/{pk}/", {"enabled": False}, format="json")
    assert changed.status_code == 200 and changed.json()["enabled"] is False
    assert LLMProfile.objects.get(pk=pk).enabled is False
    refused = api.patch(f"/api/llm/endpoints/{sim_profile.pk}/", {"enabled": False}, format="json")
    assert refused.status_code == 400


def test_the_api_refuses_a_key_and_non_admins(admin_user, reviewer, sim_profile):
    api = token_client(admin_user)
    response = api.post(
        "/api/llm/endpoints/",
        API_FIELDS | {"api_key_env": "sk-live-0123456789abcdef"},
        format="json",
    )
    assert response.status_code == 400
    assert "api_key_env" in response.json()["error"]["details"]
    assert token_client(reviewer).get("/api/llm/endpoints/").status_code == 403
    assert token_client(reviewer).post("/api/llm/endpoints/", API_FIELDS).status_code == 403


def test_the_api_tests_an_endpoint(admin_user, start_simulator, db):
    sim = start_simulator(structured="json_object")
    profile = make_profile(sim.base_url)
    response = token_client(admin_user).post(f"/api/llm/endpoints/{profile.pk}/test/")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] and body["structured_output"] == "json_object"
    assert body["reasoning_style"] == "reasoning_content"
    assert LLMProfile.objects.get(pk=profile.pk).structured_output == "json_object"
