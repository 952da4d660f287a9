"""schemathesis against the OpenAPI schema, as each role: no 500s, and every answer is one the
schema documents (status code, content type and body).

Bounded: a few examples per operation and role (MEDCOT_FUZZ_EXAMPLES, default 6), no shrinking
database, so the whole module stays well under a minute on a laptop.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from review.models import RubricDimension
from review.services.panels import panel_assign, panel_submit
from tests.factories import ItemFactory

EXAMPLES = int(os.getenv("MEDCOT_FUZZ_EXAMPLES", "6"))
ROLES = ("anonymous", "outsider", "reviewer", "expert", "admin")
USER_FIXTURES = {
    "outsider": "outsider",
    "reviewer": "reviewer",
    "expert": "expert_a",
    "admin": "admin_user",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CASES: dict[str, int] = {}


def _schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


# The fuzzing phase only: the coverage phase enumerates every boundary of every field, which
# is thorough but unbounded in time for multipart uploads.
CONFIG = SchemathesisConfig.from_dict(
    {"phases": {"coverage": {"enabled": False}, "examples": {"enabled": False}}}
)
schema = schemathesis.openapi.from_dict(_schema(), config=CONFIG)
schema.app = get_wsgi_application()


@pytest.fixture
def world(db, project, admin_user, expert_a, expert_b):
    item = ItemFactory(project=project, status="first_review")
    # An item whose panel (expert_a, expert_b) asked for a revision: the panel endpoints get
    # past their 404 to the rules, and an admin has something to adjudicate.
    panel_item = ItemFactory(project=project, status="panel")
    panel_assign(item=panel_item, experts=[expert_a, expert_b], actor=admin_user)
    for expert in (expert_a, expert_b):
        panel_submit(
            item=panel_item,
            expert=expert,
            scores=dict.fromkeys(RubricDimension.values, 1),
            decision="revise",
            answer="A",
            comment="Step 2 is vague",
        )
    # The WSGI app is called directly, not through Django's test client, so Django's
    # end-of-request hook would close the database connection that holds the test's
    # transaction (it does on PostgreSQL). Detach it for the test, as the test client does.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield {"slug": project.slug, "item": item.pk, "panel_item": panel_item.pk}
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_it_answers_every_generated_request_as_the_schema_says(case, role, world, request):
    headers = {}
    if role != "anonymous":
        user = request.getfixturevalue(USER_FIXTURES[role])
        token, _ = Token.objects.get_or_create(user=user)
        headers["Authorization"] = f"Token {token.key}"
    # Aim at the real project and items so requests get past the 404 and into the views' own
    # logic: experts and admins at the panel item, everyone else at the first-pass item.
    if case.path_parameters and "slug" in case.path_parameters:
        case.path_parameters["slug"] = world["slug"]
    if case.path_parameters and "id" in case.path_parameters:
        case.path_parameters["id"] = world["panel_item" if role in {"expert", "admin"} else "item"]
    CASES[role] = CASES.get(role, 0) + 1
    case.call_and_validate(headers=headers, checks=CHECKS)


def test_it_ran_a_bounded_number_of_cases():
    # Runs after the fuzzing above (pytest keeps file order); reports what was exercised.
    if not CASES:
        pytest.skip("the fuzz test was deselected")
    total = sum(CASES.values())
    print(f"schemathesis cases by role: {CASES}; total {total}")
    # 43 operations since the judge API, and the six of review/quality.
    assert total <= len(ROLES) * EXAMPLES * 52
