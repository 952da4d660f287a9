import json
import string
import time
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generation.parsing import (
    ParsedAnswer,
    ReplyFormatError,
    parse_answer,
    parse_synthesized,
    parse_synthesized_detailed,
)

EN = {
    "A": "Aspirin",
    "B": "Clopidogrel",
    "C": "Warfarin",
    "D": "Unfractionated heparin",
    "E": "Alteplase",
}
ZH = {
    "A": "阿司匹林",
    "B": "氯吡格雷",
    "C": "华法林",
    "D": "普通肝素",
    "E": "阿替普酶",
}

R1_EN = """Okay, let's work through this. The patient is a 67-year-old woman with atrial
fibrillation and a CHA2DS2-VASc score of 4, so she needs long-term anticoagulation.

A. Aspirin — incorrect. Antiplatelet monotherapy does not adequately prevent stroke in AF.
B. Clopidogrel — incorrect. Same problem as A; it is not an anticoagulant.
C. Warfarin — correct. A vitamin K antagonist is appropriate here, especially with a
mechanical valve where DOACs are contraindicated.
D. Unfractionated heparin — incorrect. Used for bridging, not long-term prevention.
E. Alteplase — incorrect. Thrombolysis treats acute ischaemic stroke; it does not prevent it.

"""

R1_ZH = """本题考查房颤合并机械瓣膜患者的长期抗凝选择。
A. 阿司匹林：错误，抗血小板单药不能有效预防房颤卒中。
B. 氯吡格雷：错误，理由同A。
C. 华法林：正确，机械瓣膜患者禁用新型口服抗凝药，应选择维生素K拮抗剂。
D. 普通肝素：错误，仅用于桥接抗凝。
E. 阿替普酶：错误，为溶栓药物，用于急性缺血性卒中。

"""

CORPUS = [
    # (reply, options, expected letter, expected method)
    (r"\boxed{C}", EN, "C", "boxed"),
    (R1_EN + r"Final answer: $\boxed{\text{C}}$", EN, "C", "boxed"),
    (R1_EN + r"**Final Answer**\n\n\[\boxed{\textbf{(C)}}\]", EN, "C", "boxed"),
    (R1_EN + r"So the answer is \boxed{C. Warfarin}.", EN, "C", "boxed"),
    (R1_EN + "The answer is (C).", EN, "C", "explicit"),
    (R1_EN + "**Answer: C**", EN, "C", "explicit"),
    (R1_EN + "**Answer:** C. Warfarin", EN, "C", "explicit"),
    (R1_EN + "Final answer: C. Warfarin", EN, "C", "explicit"),
    (R1_EN + "Therefore, the correct answer is C.", EN, "C", "explicit"),
    (R1_EN + "The best option is C, warfarin.", EN, "C", "explicit"),
    (R1_EN + "I would choose C.", EN, "C", "explicit"),
    (R1_EN + "So I'd go with option C.", EN, "C", "explicit"),
    (R1_EN + "Therefore, C.", EN, "C", "explicit"),
    (R1_EN + "Answer: C", EN, "C", "explicit"),
    (R1_EN + "## Answer\nThe most appropriate choice is **C** (warfarin).", EN, "C", "explicit"),
    (R1_EN + "The correct answer is C, not A.", EN, "C", "explicit"),
    (
        "A is wrong because aspirin alone is inadequate. B is wrong for the same reason. "
        "C would be reasonable but INR control is poor. The answer is D.",
        EN,
        "D",
        "explicit",
    ),
    (
        "At first I thought the answer is A, but on reflection the bleeding risk matters more. "
        "Final answer: B",
        EN,
        "B",
        "explicit",
    ),
    (
        "Some might choose A, but the valve matters. Do not pick B either. C is correct.",
        EN,
        "C",
        "verdict",
    ),
    (
        "If this were an acute stroke, the answer would be E. Here, however, the valve is "
        "mechanical, so C is correct.",
        EN,
        "C",
        "verdict",
    ),
    (
        "If she were pregnant the answer would be D, but she is not, so the answer is C.",
        EN,
        "C",
        "explicit",
    ),
    ("If I had to choose, the answer would be C.", EN, "C", "explicit"),
    (R1_EN + "The answer is Warfarin.", EN, "C", "option_text"),
    (R1_EN + "The correct answer is unfractionated heparin.", EN, "D", "option_text"),
    ("Warfarin", EN, "C", "option_text"),
    ("warfarin.", EN, "C", "option_text"),
    ('{"answer": "C"}', EN, "C", "json"),
    ('```json\n{"answer": "E", "explanation": "A, B, C and D are wrong."}\n```', EN, "E", "json"),
    ('{"final_answer": "Warfarin", "reasoning": "..."}', EN, "C", "json"),
    (R1_EN + 'Output: {"answer": "C"}', EN, "C", "json"),
    (R1_EN + "### Final Answer\n**C. Warfarin**", EN, "C", "explicit"),
    (R1_EN + "Ans: C", EN, "C", "explicit"),
    ("## Conclusion\nWarfarin (option C) is the treatment of choice.", EN, "C", "verdict"),
    ("Let me think. A, B and D are tempting, E is not.\n\nOption C.", EN, "C", "bare"),
    ("A and B are tempting, but the valve decides it.\n\nC. Warfarin", EN, "C", "bare"),
    ("C", EN, "C", "bare"),
    ("C.", EN, "C", "bare"),
    ("(C) Warfarin", EN, "C", "bare"),
    ("C. Warfarin", EN, "C", "bare"),
    ("Ｃ", EN, "C", "bare"),
    (R1_EN.strip() + "\n\nOption C is the correct answer.", EN, "C", "explicit"),
    (
        "My first thought was that the answer is A, but the valve changes things. "
        "C is the correct answer.",
        EN,
        "C",
        "explicit",
    ),
    (R1_EN + "The most likely diagnosis is (B).", EN, "B", "explicit"),
    (R1_EN + "Hence the best next step would be option E.", EN, "E", "explicit"),
    (R1_EN.strip() + "\n\nIn summary, warfarin is correct here.", EN, "C", "verdict"),
    (R1_EN.strip(), EN, "C", "verdict"),
    (
        "<think>Maybe A? No, B fits better. The answer is B.</think>\nThe answer is C.",
        EN,
        "C",
        "explicit",
    ),
    ("I considered A and B.\n</think>\n\nAnswer: D", EN, "D", "explicit"),
    # Chinese
    (R1_ZH + "答案：C", ZH, "C", "explicit"),
    (R1_ZH + "答案:C", ZH, "C", "explicit"),
    (R1_ZH + "正确答案是C项。", ZH, "C", "explicit"),
    (R1_ZH + "故选C。", ZH, "C", "explicit"),
    (R1_ZH + "选C", ZH, "C", "explicit"),
    (R1_ZH + "综上所述，答案为 C。", ZH, "C", "explicit"),
    (R1_ZH + "因此本题应选C（华法林）。", ZH, "C", "explicit"),
    (R1_ZH + "正确选项为C。", ZH, "C", "explicit"),
    ("答：C", ZH, "C", "explicit"),
    (R1_ZH + "本题答案为：C", ZH, "C", "explicit"),
    (R1_ZH + "所以正确的是C。", ZH, "C", "explicit"),
    (R1_ZH + "最合适的药物是C。", ZH, "C", "explicit"),
    ("起初认为答案是A，但考虑到机械瓣膜，C为正确答案。", ZH, "C", "explicit"),
    (R1_ZH + "答案：Ｃ", ZH, "C", "explicit"),
    (R1_ZH + "【答案】C", ZH, "C", "explicit"),
    (R1_ZH + "排除A、B、D、E，选C。", ZH, "C", "explicit"),
    ("答案不是A，应选D。", ZH, "D", "explicit"),
    ("容易误选A。若选B则出血风险高。C项正确。", ZH, "C", "verdict"),
    ("如果是急性卒中，答案应为E。本题C项正确。", ZH, "C", "verdict"),
    (R1_ZH + "最终答案：\\boxed{C}", ZH, "C", "boxed"),
    (R1_ZH + "答案是华法林。", ZH, "C", "option_text"),
    ("华法林", ZH, "C", "option_text"),
    ('{"答案": "C", "解析": "见上"}', ZH, "C", "json"),
    (R1_ZH.strip(), ZH, "C", "verdict"),
    ("A项错误，B项错误，C项正确，D项错误，E项错误。", ZH, "C", "verdict"),
]


@pytest.mark.parametrize(("reply", "options", "letter", "method"), CORPUS)
def test_it_reads_the_conclusion_of_real_looking_replies(reply, options, letter, method):
    assert parse_answer(reply, options) == ParsedAnswer(letter=letter, method=method, ok=True)


def test_it_has_a_corpus_of_at_least_forty_replies_in_both_languages():
    assert len(CORPUS) >= 40
    assert sum(1 for case in CORPUS if case[1] is ZH) >= 15


UNPARSEABLE = [
    ("", EN),
    ("   ", EN),
    (None, EN),
    ("I am not sure; more information is needed.", EN),
    ("A or B", EN),
    ("The answer is A or B.", EN),
    ("Answer: B/C", EN),
    ("答案：A、B", ZH),
    ("答案是A或B", ZH),
    ("根据题干信息无法确定答案。", ZH),
    ("The answer is F.", EN | {"E": "Alteplase"}),
    ("The answer is E.", {k: EN[k] for k in "ABCD"}),
    ("the answer is a tricky one", EN),
    ("A drug interaction is likely here.", EN),
    ("A and B are tempting here.\n\nE. Alteplase: not for prevention", EN),
    ("The answer is not clopidogrel.", EN),
    ("The most likely diagnosis is B-cell lymphoma.", EN),
    ("最可能的诊断为A型主动脉夹层。", ZH),
    ("答案是B超检查。", ZH),
    ("<think>The answer is C, surely.", EN),
    ("Let me weigh the options one by one. First, the history suggests", EN),
    (R1_EN + "Both B and C are correct here.", EN),
    ('{"answer": ""}', EN),
    ('```json\n{"answer": "A or B"}\n```', EN),
]


@pytest.mark.parametrize(("reply", "options"), UNPARSEABLE)
def test_it_marks_replies_without_a_single_answer_unparseable(reply, options):
    assert parse_answer(reply, options) == ParsedAnswer(letter=None, method="unparseable", ok=False)


def test_it_does_not_accept_letters_outside_the_options():
    assert not parse_answer("\\boxed{E}", {k: EN[k] for k in "ABCD"}).ok


def test_it_prefers_the_last_conclusion_when_the_model_changes_its_mind():
    reply = "The answer is A.\n\nWait, the patient has a mechanical valve.\n\n**Answer: C**"
    assert parse_answer(reply, EN).letter == "C"


def test_it_reads_a_very_long_latex_laden_reply_quickly():
    reply = "A. Aspirin: incorrect, {x}. Consider \\frac{1}{2} and {brace} " * 3000
    started = time.monotonic()
    assert parse_answer(reply + "The answer is D.", EN).letter == "D"
    assert time.monotonic() - started < 2


def test_it_accepts_lowercase_option_keys():
    assert parse_answer("Answer: B", {"a": "x", "b": "y", "c": "z", "d": "w"}).letter == "B"


LABELS = st.sampled_from([4, 5]).map(lambda n: list(string.ascii_uppercase[:n]))
PROSE = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=300
)


@given(labels=LABELS, data=st.data(), prose=PROSE)
def test_it_reads_any_reply_ending_with_the_answer_is_x(labels, data, prose):
    letter = data.draw(st.sampled_from(labels))
    options = {label: f"Option text {label.lower()}{label.lower()}" for label in labels}
    ending = data.draw(
        st.sampled_from(["The answer is {}.", "Final answer: {}", "答案：{}", "\\boxed{{{}}}"])
    )
    parsed = parse_answer(f"{prose}\n\n{ending.format(letter)}", options)
    assert parsed.ok
    assert parsed.letter == letter


@given(labels=LABELS, data=st.data(), prose=PROSE)
def test_it_never_reads_a_reply_ending_in_two_letters(labels, data, prose):
    first, second = data.draw(
        st.lists(st.sampled_from(labels), min_size=2, max_size=2, unique=True)
    )
    ending = data.draw(
        st.sampled_from(["The answer is {} or {}.", "答案：{}或{}", "Answer: {}/{}"])
    )
    options = {label: f"Option text {label.lower()}{label.lower()}" for label in labels}
    parsed = parse_answer(f"{prose}\n\n{ending.format(first, second)}", options)
    assert parsed == ParsedAnswer(letter=None, method="unparseable", ok=False)


@given(labels=LABELS, prose=PROSE)
def test_it_never_returns_a_letter_outside_the_options(labels, prose):
    options = {label: f"choice {label}" for label in labels}
    parsed = parse_answer(prose, options)
    assert parsed.ok == (parsed.letter is not None)
    assert parsed.letter is None or parsed.letter in labels
    assert parsed.method != "unparseable" or parsed.letter is None


# --- synthesis replies --------------------------------------------------------------------------


def _question(**overrides):
    question = {
        "stem": "A 45-year-old man has chest pain. What is the next step?",
        "options": {"A": "ECG", "B": "Chest X-ray", "C": "Troponin", "D": "CT angiography"},
        "answer": "A",
        "cot": "An ECG within ten minutes comes first. The answer is A.",
        "aspect": "investigation",
    }
    question.update(overrides)
    return question


def test_it_reads_questions_from_a_fenced_block_after_prose():
    payload = {"questions": [_question(), _question(answer="C", aspect="diagnosis")]}
    reply = "Here are the new questions:\n\n```json\n" + json.dumps(payload) + "\n```\nDone."
    questions = parse_synthesized(reply)
    assert [q["answer"] for q in questions] == ["A", "C"]
    assert questions[0]["options"]["D"] == "CT angiography"
    assert questions[1]["aspect"] == "diagnosis"


def test_it_reads_bare_json_and_normalises_answers_and_labels():
    five = {"a": "x1", "b": "x2", "c": "x3", "d": "x4", "e": "x5"}
    reply = json.dumps({"questions": [_question(options=five, answer="(e)", aspect=None)]})
    [question] = parse_synthesized(reply)
    assert question["options"] == {"A": "x1", "B": "x2", "C": "x3", "D": "x4", "E": "x5"}
    assert question["answer"] == "E"
    assert question["aspect"] == ""


def test_it_skips_invalid_questions_and_says_why():
    payload = {
        "questions": [
            _question(),
            _question(stem="  "),
            _question(options={"A": "x", "B": "y", "C": "z"}),
            _question(options={"A": "x", "B": "y", "C": "z", "E": "w"}),
            _question(answer="E"),
            _question(cot=""),
            _question(options={"A": "x", "B": "x", "C": "z", "D": "w"}),
        ]
    }
    result = parse_synthesized_detailed(json.dumps(payload))
    assert len(result.questions) == 1
    assert result.rejected == [
        "question 2 has an empty or missing stem",
        "question 3 has 3 options (4 or 5 required)",
        "question 4 has options labelled A,B,C,E (expected A,B,C,D)",
        "question 5 has answer 'E', which is not one of its options",
        "question 6 has an empty or missing cot",
        "question 7 has two options with the same text",
    ]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ("", "the reply is empty"),
        ("I cannot write new questions.", "no JSON object"),
        ('```json\n{"questions": [{"stem": "A 45-year', "no JSON object"),
        ('{"questions": {}}', "not a list"),
        ('{"questions": []}', "list is empty"),
        (json.dumps({"questions": [_question(answer="Z")]}), "no valid question"),
    ],
)
def test_it_raises_a_clear_error_for_malformed_synthesis_replies(reply, message):
    with pytest.raises(ReplyFormatError) as excinfo:
        parse_synthesized(reply)
    assert message in str(excinfo.value)


def test_it_lists_every_reason_when_no_question_is_valid():
    payload = {"questions": [_question(answer="Z"), _question(stem="")]}
    with pytest.raises(ReplyFormatError) as excinfo:
        parse_synthesized(json.dumps(payload))
    assert excinfo.value.reasons == [
        "question 1 has answer 'Z', which is not one of its options",
        "question 2 has an empty or missing stem",
    ]


TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(str.strip)


def _letters_and_digits(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


@st.composite
def questions(draw):
    size = draw(st.sampled_from([4, 5]))
    # Option texts must differ in their letters and digits, as the parser compares them so.
    texts = draw(st.lists(TEXT, min_size=size, max_size=size, unique_by=_letters_and_digits))
    labels = string.ascii_uppercase[:size]
    return {
        "stem": draw(TEXT),
        "options": dict(zip(labels, texts, strict=True)),
        "answer": draw(st.sampled_from(labels)),
        "cot": draw(TEXT),
        "aspect": draw(st.text(max_size=20)),
    }


@given(batch=st.lists(questions(), min_size=1, max_size=5), prose=PROSE, fenced=st.booleans())
def test_it_reads_back_any_valid_synthesis_reply(batch, prose, fenced):
    payload = json.dumps({"questions": batch}, ensure_ascii=False)
    reply = f"{prose}\n```json\n{payload}\n```\n" if fenced else payload
    parsed = parse_synthesized(reply)
    assert [q["answer"] for q in parsed] == [q["answer"] for q in batch]
    assert [q["stem"] for q in parsed] == [q["stem"].strip() for q in batch]
