"""Every page and partial of the permission matrix, for every role, as a Chinese browser sees it.

The routes, roles, arguments and fixtures are the permission matrix's own
(tests/security/test_permission_matrix.py), so a page added there is checked here too. A page
fails when a person would read an English word outside item content and data (see
visible_text.py for what counts, and its short allow-list of names such as MedCoT and JSONL).
"""

from __future__ import annotations

import pytest
from django.test import Client

from tests.i18n.visible_text import untranslated
from tests.security.test_permission_matrix import (
    ADMIN_SITE_PREFIX,
    DEFAULT_ARGS,
    EXPECTED,
    ROLES,
    _fill,
    all_routes,
)

CHINESE_BROWSER = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.5"}


@pytest.fixture(autouse=True)
def _chinese_admin():
    """The context's run is started as by an admin whose interface is Chinese: a run's own
    message (why nothing was eligible) is written in its starter's language, like an endpoint
    test's result."""
    from django.utils import translation

    with translation.override("zh-hans"):
        yield


# Django's own admin site ships Django's translations; the Swagger UI page is a vendor bundle.
NOT_OURS = ("api/docs/",)


def _requests(context):
    for route in all_routes():
        if route.startswith(ADMIN_SITE_PREFIX) or route in NOT_OURS:
            continue
        spec = EXPECTED.get(route)
        if spec is None:
            continue
        values = {
            **DEFAULT_ARGS,
            "slug": context["slug"],
            **{name: context[key] for name, key in spec.get("args", {}).items()},
        }
        url = _fill(route, values)
        for method in ("GET", "POST"):
            if method in spec:
                yield route, method, url


def _send(client: Client, method: str, url: str, htmx: bool):
    headers = dict(CHINESE_BROWSER)
    if htmx:
        headers["HTTP_HX_REQUEST"] = "true"
    if method == "GET":
        return client.get(url, **headers)
    return client.post(url, {}, **headers)


def _data_values() -> tuple[str, ...]:
    """What people typed or named, shown as written: endpoint and model names, version notes."""
    from generation.models import LLMProfile
    from medcot.models import ItemVersion

    values = set()
    for name, model in LLMProfile.objects.values_list("name", "model"):
        values |= {name, model}
    values |= set(ItemVersion.objects.exclude(reason="").values_list("reason", flat=True))
    return tuple(sorted(values, key=len, reverse=True))


def test_every_page_and_partial_reads_in_chinese_for_every_role(clients, context):
    data = _data_values()
    problems = []
    pages = 0
    for _route, method, url in _requests(context):
        for role in ROLES:
            for htmx in (False, True):
                response = _send(clients[role], method, url, htmx)
                if response.status_code in {301, 302, 204, 304, 405}:
                    continue
                words, lang = untranslated(response, data)
                pages += 1
                where = f"{method} {url} as {role}{' (htmx)' if htmx else ''}"
                if lang is not None and lang != "zh-Hans":
                    problems.append(f"{where}: <html lang={lang!r}>")
                problems += [f"{where}: {w}" for w in words]
    print(f"{pages} responses read in Chinese")
    assert pages > 100
    assert not problems, (
        f"{len(problems)} pieces of English on Chinese pages (translate them: "
        "`make messages`, docs/translating.md):\n" + "\n".join(dict.fromkeys(problems))
    )


@pytest.mark.parametrize("role", [r for r in ROLES if r != "anonymous"])
def test_the_same_pages_stay_english_for_an_english_browser(clients, context, role):
    """The catalogue only changes Chinese pages: an English browser still gets English."""
    response = clients[role].get("/projects/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    if response.status_code == 200:
        assert b'<html lang="en">' in response.content
