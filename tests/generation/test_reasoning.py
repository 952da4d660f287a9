import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionMessage

from generation.reasoning import split_reasoning


def message(**fields) -> ChatCompletionMessage:
    return ChatCompletionMessage.model_validate({"role": "assistant"} | fields)


def test_it_reads_deepseek_reasoning_content():
    msg = message(content="The answer is C.", reasoning_content="Weighing A to E…")
    assert split_reasoning(msg) == ("The answer is C.", "Weighing A to E…")


def test_it_reads_vllm_reasoning_and_survives_no_content():
    assert split_reasoning(message(content=None, reasoning="Still thinking")) == (
        "",
        "Still thinking",
    )


def test_it_reads_reasoning_from_a_whole_parsed_completion():
    completion = ChatCompletion.model_validate(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "deepseek-reasoner",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        "content": "答案：B",
                        "reasoning_content": "先看A项……",
                    },
                }
            ],
        }
    )
    assert split_reasoning(completion.choices[0].message) == ("答案：B", "先看A项……")


def test_it_does_not_repeat_a_reasoning_text_given_under_both_names():
    msg = {"content": "C", "reasoning": "same", "reasoning_content": "same"}
    assert split_reasoning(msg) == ("C", "same")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "<think>\nA is wrong. B fits.\n</think>\n\nThe answer is B.",
            ("The answer is B.", "A is wrong. B fits."),
        ),
        ("<think></think>Answer: D", ("Answer: D", "")),
        (
            "A is wrong. B fits.\n</think>\n\nThe answer is B.",
            ("The answer is B.", "A is wrong. B fits."),
        ),
        (
            "<think>first</think> middle <think>second</think> end",
            ("middle  end", "first\n\nsecond"),
        ),
        ("<think>cut off mid-thought", ("", "cut off mid-thought")),
        ("<THINK>shouting</THINK>Answer: A", ("Answer: A", "shouting")),
        ("No reasoning here.", ("No reasoning here.", "")),
    ],
)
def test_it_pulls_think_tags_out_of_the_content(content, expected):
    assert split_reasoning(message(content=content)) == expected
    assert split_reasoning({"content": content}) == expected


def test_it_joins_field_and_tagged_reasoning():
    msg = message(content="<think>tagged</think>Answer: A", reasoning_content="field")
    assert split_reasoning(msg) == ("Answer: A", "field\n\ntagged")


def test_it_accepts_multipart_content_and_nothing_at_all():
    msg = {"content": [{"type": "text", "text": "<think>x</think>"}, {"type": "text", "text": "C"}]}
    assert split_reasoning(msg) == ("C", "x")
    assert split_reasoning({}) == ("", "")
    assert split_reasoning(None) == ("", "")


TAGLESS = st.text(max_size=200).filter(lambda t: "think" not in t.lower())


@given(reasoning=TAGLESS, content=TAGLESS)
def test_it_splits_any_think_wrapped_reply_back_into_its_parts(reasoning, content):
    expected = (content.strip(), reasoning.strip())
    assert split_reasoning({"content": f"<think>{reasoning}</think>{content}"}) == expected
    assert split_reasoning({"content": f"{reasoning}</think>{content}"}) == expected
    assert split_reasoning({"content": content, "reasoning_content": reasoning}) == expected
