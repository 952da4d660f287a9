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
    ("## Conclusion\nWarfarin (option C) is the treatment of choice.", EN, "C", "option_text"),
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
    (R1_EN.strip() + "\n\nIn summary, warfarin is correct here.", EN, "C", "option_text"),
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


# --- answers given as an option's text inside a sentence (issue 14) ---------------------------

FLUIDS = {
    "A": "Normal saline",
    "B": "Lactated ringer",
    "C": "5% dextrose in water",
    "D": "Hypertonic saline",
    "E": "Albumin",
}
PNEUMONIA = {
    "A": "医院获得性肺炎",
    "B": "社区获得性肺炎",
    "C": "吸入性肺炎",
    "D": "肺结核",
}
# One option's text is a part of another's.
B12 = {
    "A": "Vitamin B12",
    "B": "Vitamin B12 deficiency",
    "C": "Folate deficiency",
    "D": "Iron deficiency",
}
ZH_SUB = {"A": "肺炎", "B": "社区获得性肺炎", "C": "肺癌", "D": "肺结核"}

SENTENCE_CORPUS = [
    # (reply, options, expected letter): the two replies of the issue first.
    ("I would choose Lactated ringer.", FLUIDS, "B"),
    ("我选择社区获得性肺炎。", PNEUMONIA, "B"),
    ("I'd choose lactated ringer for this patient.", FLUIDS, "B"),
    ("I would go with lactated Ringer here, given the burns.", FLUIDS, "B"),
    ("I would choose to give lactated ringer now.", FLUIDS, "B"),
    ("I would choose Lactated ringer rather than normal saline.", FLUIDS, "B"),
    ("I would choose Lactated ringer, not normal saline.", FLUIDS, "B"),
    ("Not normal saline; I would choose lactated ringer.", FLUIDS, "B"),
    ("I would pick albumin over normal saline.", FLUIDS, "E"),
    ("I think it's lactated ringer.", FLUIDS, "B"),
    ("I believe the answer is hypertonic saline because of the seizures.", FLUIDS, "D"),
    ("It is most likely 5% dextrose in water.", FLUIDS, "C"),
    ("Lactated ringer is the best choice for resuscitation here.", FLUIDS, "B"),
    ("Given the hyponatraemic seizure, hypertonic saline would be most appropriate.", FLUIDS, "D"),
    ("Normal saline is not ideal here. Lactated ringer is the correct answer.", FLUIDS, "B"),
    ("The best fluid is lactated ringer.", FLUIDS, "B"),
    ("The most appropriate fluid would be lactated ringer, not albumin.", FLUIDS, "B"),
    ("Normal saline is wrong. Final answer: lactated ringer.", FLUIDS, "B"),
    ("My answer is albumin.", FLUIDS, "E"),
    ("After ruling out normal saline, I'd go with lactated ringer.", FLUIDS, "B"),
    ("The most likely diagnosis is vitamin B12 deficiency.", B12, "B"),
    ("I would choose Vitamin B12 deficiency.", B12, "B"),
    ("I would choose folate deficiency rather than vitamin B12 deficiency.", B12, "C"),
    ("Iron deficiency is the most likely cause.", B12, "D"),
    ("The treatment is vitamin B12, so I would choose vitamin B12.", B12, "A"),
    ("我选择社区获得性肺炎，而不是医院获得性肺炎。", PNEUMONIA, "B"),
    ("排除医院获得性肺炎，我选择社区获得性肺炎。", PNEUMONIA, "B"),
    ("不是医院获得性肺炎，应该是社区获得性肺炎。", PNEUMONIA, "B"),
    ("我认为是吸入性肺炎。", PNEUMONIA, "C"),
    ("我觉得应该是肺结核。", PNEUMONIA, "D"),
    ("综合分析，考虑为社区获得性肺炎。", PNEUMONIA, "B"),
    ("社区获得性肺炎是正确答案。", PNEUMONIA, "B"),
    ("社区获得性肺炎最符合题意。", PNEUMONIA, "B"),
    ("患者在院外发病，故选择社区获得性肺炎。", PNEUMONIA, "B"),
    ("最可能的诊断是社区获得性肺炎。", PNEUMONIA, "B"),
    ("本题正确的是吸入性肺炎，不是医院获得性肺炎。", PNEUMONIA, "C"),
    ("我选择社区获得性肺炎。", ZH_SUB, "B"),
    ("最可能的诊断是肺炎，而非肺癌。", ZH_SUB, "A"),
    ("我选择肺结核，排除肺癌。", ZH_SUB, "D"),
    ("首选华法林。", ZH, "C"),
    ("我认为应选华法林，而不是阿司匹林。", ZH, "C"),
    ("I would choose warfarin instead of aspirin.", EN, "C"),
    ("Warfarin would be the treatment of choice, not heparin.", EN, "C"),
    ("I would opt for alteplase.", EN, "E"),
]

# Replies that name options without choosing one: none may be read as a letter.
SENTENCE_UNPARSEABLE = [
    ("I would not choose lactated ringer.", FLUIDS),
    ("The answer is not lactated ringer.", FLUIDS),
    ("I would choose lactated ringer or normal saline.", FLUIDS),
    ("Lactated ringer is not the best choice here.", FLUIDS),
    ("Some might choose normal saline.", FLUIDS),
    ("我选择的不是社区获得性肺炎。", PNEUMONIA),
    ("排除社区获得性肺炎。", PNEUMONIA),
    ("不是医院获得性肺炎。", PNEUMONIA),
    ("我选择社区获得性肺炎或医院获得性肺炎。", PNEUMONIA),
    ("I would choose a balanced crystalloid.", FLUIDS),
    ("I would choose selectively.", FLUIDS),
]


@pytest.mark.parametrize(("reply", "options", "letter"), SENTENCE_CORPUS)
def test_it_reads_an_option_named_by_its_text_inside_a_sentence(reply, options, letter):
    parsed = parse_answer(reply, options)
    assert (parsed.letter, parsed.ok) == (letter, True)


def test_it_has_at_least_forty_sentence_replies_in_both_languages():
    assert len(SENTENCE_CORPUS) >= 40
    assert sum(1 for case in SENTENCE_CORPUS if any("\u4e00" <= ch <= "\u9fff" for ch in case[0]))
    assert sum(1 for case in SENTENCE_CORPUS if case[0].isascii()) >= 20


@pytest.mark.parametrize(("reply", "options"), SENTENCE_UNPARSEABLE)
def test_it_reads_no_letter_from_a_sentence_that_chooses_nothing(reply, options):
    assert parse_answer(reply, options).ok is False


def test_no_sentence_reply_parses_to_a_wrong_letter():
    """Over every reply above, in both lists, with its options shuffled: a reply either
    gives the letter its text names or nothing."""
    import random

    rng = random.Random(14)
    for reply, options, *expected in [*SENTENCE_CORPUS, *SENTENCE_UNPARSEABLE]:
        for _ in range(6):
            texts = list(options.values())
            rng.shuffle(texts)
            shuffled = dict(zip(options, texts, strict=True))
            parsed = parse_answer(reply, shuffled)
            if expected:
                meant = next(k for k, v in shuffled.items() if v == options[expected[0]])
                assert parsed.letter in {meant, None}, (reply, shuffled, parsed)
                assert parsed.ok, (reply, shuffled)
            else:
                assert not parsed.ok, (reply, shuffled, parsed)
