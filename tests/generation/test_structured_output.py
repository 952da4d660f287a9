"""How a request asks for JSON in each structured-output mode, and which 200 replies are
faults of the transport rather than answers."""

import pytest

from generation.client import ChatRequest, ProfileSnapshot, reply_fault, response_format_for
from generation.parsing import SYNTHESIS_SCHEMA, SYNTHESIS_SCHEMA_NAME, parse_synthesized
from llmsim.server import SimulatorConfig
from tests.generation.conftest import make_profile


@pytest.fixture
def snapshot(db):
    def of(mode: str) -> ProfileSnapshot:
        profile = make_profile(
            "http://sim/v1", name=f"sim-{mode}", is_default=False, structured_output=mode
        )
        return ProfileSnapshot.of(profile)

    return of


def _synthesis_request() -> ChatRequest:
    return ChatRequest(
        task="synthesize",
        messages=[],
        json_reply=True,
        schema=SYNTHESIS_SCHEMA,
        schema_name=SYNTHESIS_SCHEMA_NAME,
    )


def test_json_schema_mode_sends_the_strict_synthesis_schema(snapshot):
    fmt = response_format_for(snapshot("json_schema"), _synthesis_request())
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["name"] == "synthesized_questions"
    schema = fmt["json_schema"]["schema"]
    item = schema["properties"]["questions"]["items"]
    # What strict schemas demand: every property required, no others allowed.
    assert set(item["required"]) == set(item["properties"])
    assert item["additionalProperties"] is False and schema["additionalProperties"] is False


def test_json_object_and_none_modes(snapshot):
    assert response_format_for(snapshot("json_object"), _synthesis_request()) == {
        "type": "json_object"
    }
    assert response_format_for(snapshot("none"), _synthesis_request()) is None
    # Answers are free text whatever the mode.
    answer = ChatRequest(task="reanswer", messages=[])
    assert response_format_for(snapshot("json_schema"), answer) is None


def test_a_reply_in_the_schemas_shape_is_read_and_validated():
    reply = (
        '{"questions": [{"stem": "A 30-year-old has a fever. Next step?", "options": '
        '["Blood cultures", "Discharge", "CT head", "Observe"], "answer": "A", "cot": "A is '
        'right; the others are wrong.", "aspect": "next step"}, {"stem": "", "options": [], '
        '"answer": "Z", "cot": "", "aspect": ""}]}'
    )
    questions = parse_synthesized(reply)
    assert len(questions) == 1
    assert questions[0]["options"] == {
        "A": "Blood cultures",
        "B": "Discharge",
        "C": "CT head",
        "D": "Observe",
    }


@pytest.mark.parametrize(
    "content",
    [
        "",
        "   \n",
        None,
        "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        "<!DOCTYPE html><html><body>Service Unavailable</body></html>",
        "upstream connect error or disconnect/reset before headers",
        "502 Bad Gateway",
    ],
)
def test_empty_and_gateway_replies_are_faults(content):
    assert reply_fault(content)


@pytest.mark.parametrize(
    "content",
    [
        "The answer is (C).",
        '{"questions": []}',
        "我选择社区获得性肺炎。",
        "Internal server error is rare",
    ],
)
def test_real_replies_are_not_faults(content):
    assert reply_fault(content) == ""


def test_the_simulator_config_reads_structured_modes():
    assert SimulatorConfig(structured="none").structured == ()
    assert SimulatorConfig(structured="json_schema|json_object").structured == (
        "json_schema",
        "json_object",
    )
