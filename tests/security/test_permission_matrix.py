"""Every URL pattern of the site × every role, compared with an explicit table.

The patterns are read from the resolver, so a page or endpoint added anywhere shows up here;
one missing from the table fails with a message saying where to add it. Outcomes:
"login" = redirect to the login page, "302" = another redirect, otherwise the status code.
Admin-site patterns are covered by one rule (nobody in these roles is staff).
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from generation.services import run_start
from medcot.imports.formats import ImportOptions
from medcot.imports.service import import_batch_create
from tests.factories import ItemFactory

ROLES = ("anonymous", "outsider", "reviewer", "expert", "admin")
USER_FIXTURES = {
    "outsider": "outsider",
    "reviewer": "reviewer",
    "expert": "expert_a",
    "admin": "admin_user",
}


def _row(anonymous, outsider, reviewer, expert, admin) -> dict[str, str]:
    return dict(zip(ROLES, (anonymous, outsider, reviewer, expert, admin), strict=True))


MEMBERS_PAGE = _row("login", "403", "200", "200", "200")
ADMIN_PAGE = _row("login", "403", "403", "403", "200")
MEMBERS_API = _row("401", "403", "200", "200", "200")
ADMIN_API = _row("401", "403", "403", "403", "200")

# route → {"GET": row, "POST": row (optional), "args": {kwarg: context key}}
# POST is sent with an empty body: it proves who is refused before any input is read
# (a permitted role gets its form or a 400 back).
EXPECTED: dict[str, dict] = {
    "": {"GET": _row("login", "302", "302", "302", "302")},
    "login/": {"GET": _row("200", "302", "302", "302", "302")},
    "logout/": {"GET": _row("405", "405", "405", "405", "405")},
    # The language switcher (on the login page too) and the JavaScript catalogue: for everyone.
    "language/": {
        "GET": _row("405", "405", "405", "405", "405"),
        "POST": _row("400", "400", "400", "400", "400"),
    },
    "jsi18n/": {"GET": _row("200", "200", "200", "200", "200")},
    "projects/": {"GET": MEMBERS_PAGE},
    "projects/new/": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE},
    "projects/<slug:slug>/": {"GET": MEMBERS_PAGE},
    "projects/<slug:slug>/items/<int:pk>/": {"GET": ADMIN_PAGE, "args": {"pk": "item"}},
    "projects/<slug:slug>/items/<int:pk>/retry/": {
        "GET": _row("login", "405", "405", "405", "405"),
        "POST": _row("login", "403", "403", "403", "302"),
        "args": {"pk": "item"},
    },
    "projects/<slug:slug>/import/": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE},
    "projects/<slug:slug>/import/<int:pk>/": {"GET": ADMIN_PAGE, "args": {"pk": "batch"}},
    # The batch is past its preview: admins are sent on to its report.
    "projects/<slug:slug>/import/<int:pk>/preview/": {
        "GET": _row("login", "403", "403", "403", "302"),
        "POST": _row("login", "403", "403", "403", "302"),
        "args": {"pk": "batch"},
    },
    "api/auth/token/": {
        "GET": _row("405", "405", "405", "405", "405"),
        "POST": _row("400", "400", "400", "400", "400"),
    },
    "api/projects/": {"GET": MEMBERS_API, "POST": ADMIN_API | {"admin": "400"}},
    "api/projects/<slug:slug>/": {"GET": MEMBERS_API},
    "api/projects/<slug:slug>/imports/": {"GET": ADMIN_API, "POST": ADMIN_API | {"admin": "400"}},
    "api/projects/<slug:slug>/imports/<int:pk>/": {"GET": ADMIN_API, "args": {"pk": "batch"}},
    # Reviewers and experts get the items they hold (an empty page here), never others'.
    "api/projects/<slug:slug>/items/": {"GET": MEMBERS_API},
    # The reviewer's first-pass page (walked earlier) leased them the context item, so they
    # hold it and may read it; the expert holds nothing.
    "api/projects/<slug:slug>/items/<int:pk>/": {
        "GET": _row("401", "403", "200", "403", "200"),
        "args": {"pk": "item"},
    },
    "api/schema/": {"GET": MEMBERS_API},
    "api/^[\\s\\S]*$": {"GET": _row("404", "404", "404", "404", "404")},
    "api/docs/": {"GET": MEMBERS_PAGE},
}

NOBODY_GETS = _row("login", "405", "405", "405", "405")
ADMIN_POST = _row("login", "403", "403", "403", "404")
REVIEWER_OR_EXPERT_PAGE = _row("login", "403", "200", "200", "403")

# The generation app: runs and LLM settings are for admins only.
EXPECTED |= {
    "projects/<slug:slug>/runs/": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE},
    "projects/<slug:slug>/runs/start/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "403", "400"),
    },
    "projects/<slug:slug>/runs/<int:pk>/": {
        "GET": ADMIN_PAGE,
        "args": {"pk": "run"},
    },
    "projects/<slug:slug>/runs/<int:pk>/<str:action>/": {
        "GET": NOBODY_GETS,
        "POST": ADMIN_POST,  # an unknown action on a real run is a 404
        "args": {"pk": "run"},
    },
    "projects/<slug:slug>/runs/<int:pk>/jobs/<int:job_pk>/retry/": {
        "GET": NOBODY_GETS,
        "POST": ADMIN_POST,  # job 1 is not a failed job of this run
        "args": {"pk": "run"},
    },
    "llm/": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE},
    "llm/prompts/<int:pk>/edit/": {"GET": ADMIN_POST, "POST": ADMIN_POST},
    "projects/<slug:slug>/runs/<int:pk>/replies/": {"GET": ADMIN_PAGE, "args": {"pk": "run"}},
    "llm/endpoints/new/": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE | {"admin": "400"}},
    "llm/endpoints/<int:pk>/edit/": {
        "GET": ADMIN_PAGE,
        "POST": ADMIN_PAGE | {"admin": "400"},
        "args": {"pk": "profile"},
    },
    # The test makes live calls (to a simulator URL nobody serves here) and redirects back;
    # an empty "enabled" asks to disable the default endpoint, which is refused with a message.
    "llm/endpoints/<int:pk>/test/": {
        "GET": NOBODY_GETS,
        "POST": ADMIN_POST | {"admin": "302"},
        "args": {"pk": "profile"},
    },
    "llm/endpoints/<int:pk>/enabled/": {
        "GET": NOBODY_GETS,
        "POST": ADMIN_POST | {"admin": "302"},
        "args": {"pk": "profile"},
    },
}

# The review app. "pk" is an item no one holds: people who may act on some items get a
# validation error (422), a 404 or a redirect back to their queue, never the item.
EXPECTED |= {
    "review/": {"GET": MEMBERS_PAGE, "POST": NOBODY_GETS},
    "review/first-pass/": {"GET": REVIEWER_OR_EXPERT_PAGE},
    "review/first-pass/<int:pk>/submit/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "422", "403", "403"),
        "args": {"pk": "item"},
    },
    "review/first-pass/<int:pk>/skip/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "302", "302", "403"),
        "args": {"pk": "item"},
    },
    "review/first-pass/undo/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "422", "422", "403"),
    },
    "review/consensus/": {"GET": _row("login", "403", "403", "200", "403")},
    "review/consensus/<int:pk>/vote/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "404", "403"),
        "args": {"pk": "item"},
    },
    "review/consensus/<int:pk>/skip/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "302", "403"),
        "args": {"pk": "item"},
    },
    "review/panels/": {"GET": _row("login", "403", "403", "200", "200")},
    # An empty bulk action is refused with the form's error (nothing to do).
    "review/panels/bulk/": {"GET": NOBODY_GETS, "POST": _row("login", "403", "403", "403", "422")},
    "review/panels/assign/<int:pk>/": {
        # The item is not waiting for a panel, so the admin is sent back to the list.
        "GET": _row("login", "403", "403", "403", "302"),
        "args": {"pk": "item"},
    },
    "review/panels/assign/<int:pk>/save/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "403", "422"),
        "args": {"pk": "item"},
    },
    # Experts only see panels they sit on: another item is a 404 for them and for admins.
    "review/panels/item/<int:pk>/": {
        "GET": _row("login", "403", "403", "404", "404"),
        "args": {"pk": "item"},
    },
    "review/panels/item/<int:pk>/score/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "404", "404"),
        "args": {"pk": "item"},
    },
    "review/panels/item/<int:pk>/revise/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "404", "404"),
        "args": {"pk": "item"},
    },
    "review/panels/item/<int:pk>/regenerate/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "404", "404"),
        "args": {"pk": "item"},
    },
    "review/items/<int:pk>/adjudicate/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "403", "302"),
        "args": {"pk": "item"},
    },
    "review/items/<int:pk>/history/": {"GET": ADMIN_PAGE, "args": {"pk": "item"}},
    "review/overview/": {"GET": ADMIN_PAGE},
    "review/rubric/": {"GET": MEMBERS_PAGE},
    "review/rubric/edit/": {"GET": ADMIN_PAGE, "POST": _row("login", "403", "403", "403", "422")},
}

# Releases and dashboards: admins only. Version "1" does not exist: admins get a 404.
ADMIN_404 = _row("login", "403", "403", "403", "404")
EXPECTED |= {
    "projects/<slug:slug>/dashboard/": {"GET": ADMIN_PAGE},
    "projects/<slug:slug>/releases/": {
        "GET": ADMIN_PAGE,
        "POST": _row("login", "403", "403", "403", "400"),
    },
    "projects/<slug:slug>/releases/<str:version>/": {"GET": ADMIN_404},
    "projects/<slug:slug>/releases/<str:version>/download/": {"GET": ADMIN_404},
    "projects/<slug:slug>/releases/<str:version>/files/<path:name>": {"GET": ADMIN_404},
    "projects/<slug:slug>/releases/<str:version>/diff/": {"GET": ADMIN_404},
    "projects/<slug:slug>/releases/<str:version>/retry/": {"GET": NOBODY_GETS, "POST": ADMIN_404},
}

# The API over runs and releases: admins only.
API_ADMIN_404 = _row("401", "403", "403", "403", "404")
API_CONTROL = {
    "GET": _row("401", "403", "403", "403", "405"),
    "POST": ADMIN_API,
    "args": {"pk": "run"},
}
EXPECTED |= {
    "api/projects/<slug:slug>/items/<int:pk>/reviews/": {"GET": ADMIN_API, "args": {"pk": "item"}},
    "api/projects/<slug:slug>/items/<int:pk>/panel/": {
        "GET": _row("401", "403", "403", "403", "405"),
        "POST": ADMIN_API | {"admin": "400"},
        "args": {"pk": "item"},
    },
    "api/projects/<slug:slug>/items/<int:pk>/adjudication/": {
        "GET": _row("401", "403", "403", "403", "405"),
        "POST": ADMIN_API | {"admin": "400"},
        "args": {"pk": "item"},
    },
    "api/projects/<slug:slug>/runs/": {"GET": ADMIN_API, "POST": ADMIN_API | {"admin": "400"}},
    "api/projects/<slug:slug>/runs/<int:pk>/": {"GET": ADMIN_API, "args": {"pk": "run"}},
    "api/projects/<slug:slug>/runs/<int:pk>/pause/": API_CONTROL,
    "api/projects/<slug:slug>/runs/<int:pk>/resume/": API_CONTROL,
    "api/projects/<slug:slug>/runs/<int:pk>/cancel/": API_CONTROL,
    "api/projects/<slug:slug>/releases/": {
        "GET": ADMIN_API,
        "POST": ADMIN_API | {"admin": "400"},
    },
    "api/projects/<slug:slug>/releases/<str:version>/": {"GET": API_ADMIN_404},
    "api/projects/<slug:slug>/releases/<str:version>/download/": {"GET": API_ADMIN_404},
    "api/projects/<slug:slug>/releases/<str:version>/diff/": {"GET": API_ADMIN_404},
    "api/projects/<slug:slug>/runs/<int:pk>/calls/": {"GET": ADMIN_API, "args": {"pk": "run"}},
    "api/llm/endpoints/": {"GET": ADMIN_API, "POST": ADMIN_API | {"admin": "400"}},
    "api/llm/endpoints/<int:pk>/": {
        "GET": ADMIN_API,
        "POST": ADMIN_API | {"admin": "405"},
        "args": {"pk": "profile"},
    },
    "api/llm/endpoints/<int:pk>/test/": {
        "GET": ADMIN_API | {"admin": "405"},
        "POST": ADMIN_API,
        "args": {"pk": "profile"},
    },
}

# The API's review workflow writes: POST only. Routes are walked in URL order, so the reviewer
# already holds the context item (see the item row above): the expert is refused its
# first-pass submission (someone else's item) while the reviewer gets a 400 for the empty
# body. The item is at first review, so it has no panel (404) and no consensus (404).
# Undo names no item: reviewers and experts are told there is nothing to undo (400). Skip
# releases the reviewer's lease (204); the expert, holding nothing, is refused (403).
API_POST_ONLY = _row("401", "403", "405", "405", "405")
API_PANEL_MEMBERS = _row("401", "403", "403", "404", "404")
EXPECTED |= {
    "api/review/first-pass/next/": {
        "GET": API_POST_ONLY,
        "POST": _row("401", "403", "200", "200", "403"),
    },
    "api/review/items/<int:pk>/first-pass/": {
        "GET": API_POST_ONLY,
        "POST": _row("401", "403", "400", "403", "403"),
        "args": {"pk": "item"},
    },
    "api/review/items/<int:pk>/scores/": {
        "GET": API_POST_ONLY,
        "POST": API_PANEL_MEMBERS,
        "args": {"pk": "item"},
    },
    "api/review/items/<int:pk>/consensus/": {
        "GET": API_POST_ONLY,
        "POST": _row("401", "403", "403", "404", "403"),
        "args": {"pk": "item"},
    },
    "api/review/first-pass/undo/": {
        "GET": _row("401", "403", "200", "200", "403"),
        "POST": _row("401", "403", "400", "400", "403"),
    },
    "api/review/items/<int:pk>/first-pass/skip/": {
        "GET": API_POST_ONLY,
        "POST": _row("401", "403", "204", "403", "403"),
        "args": {"pk": "item"},
    },
    "api/review/items/<int:pk>/revision/": {
        "GET": API_POST_ONLY,
        "POST": API_PANEL_MEMBERS,
        "args": {"pk": "item"},
    },
    "api/review/items/<int:pk>/regeneration/": {
        "GET": API_POST_ONLY,
        "POST": API_PANEL_MEMBERS,
        "args": {"pk": "item"},
    },
}

ADMIN_SITE_PREFIX = "django-admin/"
# Nobody in the five roles is staff: the admin site sends every one of them to its own login.
ADMIN_SITE_EXPECTED = {
    "django-admin/login/": _row("200", "200", "200", "200", "200"),
    "django-admin/logout/": _row("302", "302", "302", "302", "302"),
}
ADMIN_SITE_DEFAULT = "admin-login"

DEFAULT_ARGS = {
    "version": "1",
    "action": "nonsense",
    "job_pk": "1",
    "name": "README.md",
    "object_id": "1",
    "content_type_id": "1",
    "id": "1",
    "app_label": "medcot",
    "url": "nothing-here/",
}


# The machine judge: calibration and settings for admins; an item's second opinion only for a
# person who gave their own verdict on it (nobody has on the context item, so it is a 404 for
# every role, as for an item the judge never scored); feedback on rationales for experts.
EXPECTED |= {
    "review/judge/projects/<slug:slug>/": {"GET": ADMIN_PAGE},
    "review/judge/projects/<slug:slug>/settings/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "403", "422"),
    },
    "review/judge/items/<int:pk>/": {
        "GET": _row("login", "404", "404", "404", "404"),
        "args": {"pk": "item"},
    },
    "review/judge/items/<int:pk>/feedback/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "404", "403"),
        "args": {"pk": "item"},
    },
    "api/projects/<slug:slug>/judge/calibration/": {"GET": ADMIN_API},
    "api/projects/<slug:slug>/judge/settings/": {"GET": ADMIN_API},
    "api/review/items/<int:pk>/judge-opinion/": {
        "GET": _row("401", "403", "404", "404", "404"),
        "args": {"pk": "item"},
    },
    "api/review/items/<int:pk>/judge-opinion/feedback/": {
        "GET": _row("401", "403", "405", "405", "405"),
        "POST": _row("401", "403", "403", "404", "403"),
        "args": {"pk": "item"},
    },
}


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern


def all_routes() -> list[str]:
    return [route for route, _ in _walk(get_resolver().url_patterns)]


def _fill(route: str, values: dict[str, str]) -> str:
    if route == "api/^[\\s\\S]*$":
        return "/api/no-such-endpoint/"
    if route.startswith("django-admin/^"):
        # The admin's app index is a regex route; the only one of its kind.
        return "/django-admin/medcot/"
    # A parameter the table does not name gets "1": enough to reach the view's own checks.
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values.get(m.group(1), "1")), route)
    path = re.sub(r"\(\?P<(\w+)>[^)]*\)\$?", lambda m: str(values.get(m.group(1), "1")), path)
    return "/" + path.lstrip("^").rstrip("$")


def _outcome(response) -> str:
    if response.status_code in {301, 302}:
        location = response["Location"]
        if location.startswith("/login/"):
            return "login"
        if location.startswith("/django-admin/login/"):
            return "admin-login"
        return "302"
    return str(response.status_code)


@pytest.fixture
def context(db, project, admin_user):
    item = ItemFactory(project=project, status="first_review")
    batch = import_batch_create(
        project=project,
        data=b'{"id": "x"}',
        file_name="seeds.jsonl",
        options=ImportOptions(),
        actor=admin_user,
    )
    # Starting a run only queues jobs; the test transaction never commits, so none is sent.
    run = run_start(project=project, stage="cot", actor=admin_user)
    return {
        "project": project,
        "slug": project.slug,
        "item": item.pk,
        "batch": batch.pk,
        "run": run.pk,
        "profile": run.profile_id,
    }


@pytest.fixture
def clients(request, context):
    made = {"anonymous": Client()}
    for role, fixture in USER_FIXTURES.items():
        client = Client()
        client.force_login(request.getfixturevalue(fixture))
        made[role] = client
    return made


def test_it_knows_every_url_pattern_of_the_site():
    unknown = [
        route
        for route in all_routes()
        if route not in EXPECTED and not route.startswith(ADMIN_SITE_PREFIX)
    ]
    assert not unknown, (
        "These URL patterns are not in the permission matrix. Add each to EXPECTED in "
        f"tests/security/test_permission_matrix.py with who may GET (and POST) it: {unknown}"
    )


def test_it_lists_no_route_that_no_longer_exists():
    gone = set(EXPECTED) - set(all_routes())
    assert not gone, f"Remove these from EXPECTED; the site no longer has them: {sorted(gone)}"


def test_it_gives_every_role_exactly_the_expected_access(clients, context):
    surprises = []
    checked = 0
    for route in all_routes():
        if route.startswith(ADMIN_SITE_PREFIX):
            spec = {"GET": ADMIN_SITE_EXPECTED.get(route, dict.fromkeys(ROLES, ADMIN_SITE_DEFAULT))}
            values = DEFAULT_ARGS
        else:
            spec = EXPECTED.get(route)
            if spec is None:
                continue  # reported by test_it_knows_every_url_pattern_of_the_site
            values = {
                **DEFAULT_ARGS,
                "slug": context["slug"],
                **{name: context[key] for name, key in spec.get("args", {}).items()},
            }
        url = _fill(route, values)
        for method in ("GET", "POST"):
            row = spec.get(method)
            if row is None:
                continue
            for role in ROLES:
                client = clients[role]
                response = client.get(url) if method == "GET" else client.post(url, {})
                got = _outcome(response)
                checked += 1
                if got != row[role]:
                    surprises.append(f"{method} {url} as {role}: expected {row[role]}, got {got}")
    print(f"permission matrix: {len(all_routes())} URL patterns, {checked} route×method×role cases")
    assert not surprises, "Permission matrix surprises:\n" + "\n".join(surprises)
    assert checked >= len(EXPECTED) * len(ROLES)


# review/quality: the reliability and controls pages, the alert actions and their API (admins).
EXPECTED |= {
    "projects/<slug:slug>/reliability/": {"GET": ADMIN_PAGE},
    # An empty POST is an invalid control-file form: 422 with the errors.
    "projects/<slug:slug>/controls/": {"GET": ADMIN_PAGE, "POST": ADMIN_PAGE | {"admin": "422"}},
    "projects/<slug:slug>/reliability/alerts/<int:pk>/second-opinion/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "403", "404"),
        "args": {"pk": "item"},
    },
    "projects/<slug:slug>/reliability/alerts/<int:pk>/close/": {
        "GET": NOBODY_GETS,
        "POST": _row("login", "403", "403", "403", "404"),
        "args": {"pk": "item"},
    },
    "api/projects/<slug:slug>/quality/reliability/": {"GET": ADMIN_API},
    "api/projects/<slug:slug>/quality/controls/": {
        "GET": ADMIN_API,
        "POST": ADMIN_API | {"admin": "400"},
    },
    "api/projects/<slug:slug>/quality/alerts/": {"GET": ADMIN_API},
    "api/projects/<slug:slug>/quality/alerts/<int:pk>/second-opinion/": {
        "GET": _row("401", "403", "403", "403", "405"),
        "POST": API_ADMIN_404,
        "args": {"pk": "item"},
    },
    "api/projects/<slug:slug>/quality/posteriors/": {"GET": ADMIN_API},
}
