"""A simulated OpenAI-compatible chat server for development, tests and benchmarks.

It is not a language model and knows no medicine. It answers ``/v1/chat/completions`` with
replies shaped like real reasoning models' output, and the *client* tells it the facts through
headers that only simulated profiles send:

- ``X-MedCoT-Task``: ``cot`` | ``synthesize`` | ``reanswer`` | ``regenerate`` | ``judge``;
- ``X-MedCoT-Sim-Key``: the correct option letter, as shown to the model;
- ``X-MedCoT-Sim-Count``: how many questions a ``synthesize`` reply should hold;
- ``X-MedCoT-Sim-Concluded`` and ``X-MedCoT-Sim-Steps``: for ``judge``, the option the judged
  CoT concludes on and its number of steps.

In judge mode the simulated truth of an item is fixed by those facts (a CoT that concludes off
the key is medically wrong from its last step on; others are sound, with a few weaker
dimensions drawn from the question's text), and the judge reports the truth of each dimension
with probability ``judge_agreement``, otherwise a score drawn at random.

With probability ``accuracy`` a reply concludes on the key, otherwise on another option. Faults
(429, 500, 402, held-then-dropped connections, malformed replies) happen at configured rates.
Every random choice is drawn from ``(seed, hash of the request, how often that same request has
been seen)``, so runs repeat exactly and a retried request can succeed after a fault.

Everything it returns is labelled: model names start with ``sim-``, every response carries
``X-MedCoT-Simulated: true`` and reply texts contain "[simulated]".
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

__all__ = [
    "LATENCY_DISTRIBUTIONS",
    "REASONING_STYLES",
    "STRUCTURED_MODES",
    "TASKS",
    "SimulatorConfig",
    "SimulatorHandle",
    "build_app",
    "run_in_thread",
    "serve_forever",
    "structured_modes",
]

LATENCY_DISTRIBUTIONS = ("const", "exp", "lognormal")
REASONING_STYLES = ("deepseek", "vllm", "think", "think-close", "none")
TASKS = ("cot", "synthesize", "reanswer", "regenerate", "judge")
SIMULATED_HEADER = "X-MedCoT-Simulated"
STRUCTURED_MODES = ("json_schema", "json_object")


def structured_modes(value: str) -> tuple[str, ...]:
    """`--structured` as given: "none", or modes separated by commas or "|"."""
    value = value.strip().lower()
    if value in {"", "none"}:
        return ()
    return tuple(part.strip() for part in re.split(r"[,|]", value) if part.strip())


def _env_fraction(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


@dataclass(frozen=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0 picks a free port
    latency_mean: float = 0.5  # seconds
    latency_dist: str = "const"
    accuracy: float = 0.7
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_402: float = 0.0
    rate_timeout: float = 0.0
    # A "timeout" holds the connection this long, then drops it; above the SDK's 600 s default.
    timeout_hold: float = 660.0
    rate_malformed: float = 0.0
    # A 200 that is no answer: empty content, or a proxy's error page passed on as content.
    rate_empty: float = 0.0
    retry_after: int = 1  # seconds, sent with every 429
    # Per-item difficulty: this share of items (by their option texts) is hard, and a hard item
    # is answered right with probability accuracy ** hard_exponent (0.098 at 0.7) and otherwise
    # with the same wrong option every time, as real models fail the same items again and
    # again. With the defaults about 6 % of items get five wrong answers in a row.
    # MEDCOT_SIM_HARD_SHARE sets the default, e.g. 0 for the old independent draws.
    hard_share: float = field(default_factory=lambda: _env_fraction("MEDCOT_SIM_HARD_SHARE", 0.1))
    hard_exponent: float = 6.5
    # The response_format types it honours; a request asking for another gets a plain answer,
    # as some servers do (they ignore what they do not support).
    structured: tuple[str, ...] = ("json_schema", "json_object")
    reasoning: str = "deepseek"
    # Judge mode: the chance that each dimension's score is the simulated truth.
    judge_agreement: float = field(
        default_factory=lambda: _env_fraction("MEDCOT_SIM_JUDGE_AGREEMENT", 0.8)
    )
    seed: int = 0
    model: str = "sim-medcot"
    api_key: str | None = None  # when set, requests must send it as a bearer token
    access_log: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.latency_dist not in LATENCY_DISTRIBUTIONS:
            problems.append(f"latency_dist must be one of {', '.join(LATENCY_DISTRIBUTIONS)}")
        if self.reasoning not in REASONING_STYLES:
            problems.append(f"reasoning must be one of {', '.join(REASONING_STYLES)}")
        if self.latency_mean < 0 or self.timeout_hold < 0:
            problems.append("latency_mean and timeout_hold must not be negative")
        if not 0 <= self.accuracy <= 1:
            problems.append("accuracy must be between 0 and 1")
        if not 0 <= self.judge_agreement <= 1:
            problems.append("judge_agreement must be between 0 and 1")
        rates = [
            self.rate_429,
            self.rate_500,
            self.rate_402,
            self.rate_timeout,
            self.rate_malformed,
            self.rate_empty,
        ]
        if not 0 <= self.hard_share <= 1 or self.hard_exponent < 1:
            problems.append("hard_share must be in 0..1 and hard_exponent at least 1")
        if isinstance(self.structured, str):
            object.__setattr__(self, "structured", structured_modes(self.structured))
        unknown = set(self.structured) - set(STRUCTURED_MODES)
        if unknown:
            problems.append(
                f"structured must be 'none' or some of {', '.join(STRUCTURED_MODES)}, "
                f"not {', '.join(sorted(unknown))}"
            )
        if any(not 0 <= r <= 1 for r in rates) or sum(rates) > 1:
            problems.append("fault rates must each be in 0..1 and add up to at most 1")
        if not 0 <= self.port <= 65535:
            problems.append("port must be in 0..65535")
        if problems:
            raise ValueError("; ".join(problems))
        if not self.model.startswith("sim-"):
            # The prefix is what tells every downstream record that no real model answered.
            object.__setattr__(self, "model", f"sim-{self.model}")


@dataclass
class _State:
    config: SimulatorConfig
    seen: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    tasks: Counter[str] = field(default_factory=Counter)
    conclusions: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    started_at: float = field(default_factory=time.time)

    def snapshot(self) -> dict[str, Any]:
        return {
            "simulated": True,
            "model": self.config.model,
            "requests": sum(self.outcomes.values()),
            "outcomes": dict(self.outcomes),
            "tasks": dict(self.tasks),
            "conclusions": dict(self.conclusions),
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "uptime_s": round(time.time() - self.started_at, 3),
            "config": asdict(self.config) | {"api_key": bool(self.config.api_key)},
        }

    def reset(self) -> None:
        self.seen.clear()
        self.outcomes.clear()
        self.tasks.clear()
        self.conclusions.clear()
        self.max_in_flight = self.in_flight
        self.started_at = time.time()


# --- helpers ------------------------------------------------------------------------------------


# Error replies as OpenAI (429, 500) and DeepSeek (402, out of balance) send them.
_FAULT_REPLIES: dict[str, tuple[int, str, str, str | None]] = {
    "rate_limited": (
        429,
        "Rate limit reached for requests (simulated).",
        "requests",
        "rate_limit_exceeded",
    ),
    "server_error": (
        500,
        "The server had an error while processing your request (simulated).",
        "server_error",
        None,
    ),
    "payment_required": (
        402,
        "Insufficient Balance (simulated).",
        "unknown_error",
        "invalid_request_error",
    ),
}


def _error(status: int, message: str, *, kind: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status)


def _request_rng(state: _State, body: bytes, sim_headers: tuple[str, ...]) -> random.Random:
    digest = hashlib.sha256(body + "\x00".join(sim_headers).encode()).hexdigest()
    occurrence = state.seen[digest]
    state.seen[digest] += 1
    material = f"{state.config.seed}:{digest}:{occurrence}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))


def _latency(config: SimulatorConfig, rng: random.Random) -> float:
    mean = config.latency_mean
    if mean <= 0:
        return 0.0
    if config.latency_dist == "exp":
        return rng.expovariate(1 / mean)
    if config.latency_dist == "lognormal":
        sigma = 0.5
        return rng.lognormvariate(math.log(mean) - sigma**2 / 2, sigma)
    return mean


def _fault(config: SimulatorConfig, rng: random.Random) -> str | None:
    roll = rng.random()
    for name, rate in (
        ("rate_limited", config.rate_429),
        ("server_error", config.rate_500),
        ("payment_required", config.rate_402),
        ("timeout", config.rate_timeout),
        ("malformed", config.rate_malformed),
        ("empty", config.rate_empty),
    ):
        if roll < rate:
            return name
        roll -= rate
    return None


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    return ""


def _count_tokens(value: str) -> int:
    # Roughly one token per CJK character and per four other characters, as tokenizers do.
    cjk = len(_CJK.findall(value))
    return cjk + math.ceil((len(value) - cjk) / 4)


def _validate(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return "The request body must be a JSON object."
    if not isinstance(payload.get("model"), str) or not payload["model"]:
        return "you must provide a model parameter"
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in {
            "system",
            "user",
            "assistant",
            "developer",
            "tool",
        }:
            return f"messages[{i}] must be an object with a valid 'role'"
    for name in ("max_tokens", "max_completion_tokens"):
        limit = payload.get(name)
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            return f"'{name}' must be a positive integer"
    if not isinstance(payload.get("response_format") or {}, dict):
        return "'response_format' must be an object"
    if payload.get("stream"):
        return "stream=true is not supported by the MedCoT simulator; send stream=false"
    return None


# --- reply texts --------------------------------------------------------------------------------
# The texts only need to look like reasoning-model output and to conclude in the many formats
# parse_answer must read; they carry no medical content.

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_OPTION_LINE = re.compile(
    r"^\s*(?:\*\*)?[(\[（]?([A-J])[)\]）]?\s*(?:\*\*)?\s*[.):：:、．]\s*(?:\*\*)?\s*(.+?)\s*$",
    re.MULTILINE,
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class _Prompt:
    stem: str
    options: dict[str, str]
    chinese: bool


@dataclass(frozen=True)
class _Reply:
    content: str
    reasoning: str
    key: str
    conclusion: str | None


_HEADING = re.compile(
    r"^\s*(?:question|options|stem|题目|题干|选项|问题)[^:：\n]{0,40}[:：]\s*", re.I
)


def _option_block(prompt: str) -> tuple[dict[str, str], int]:
    """The first run of option lines A, B, C… on adjacent lines, and where it starts. Later
    runs are the previous explanation's discussion (regeneration prompts quote it)."""
    options: dict[str, str] = {}
    start = end = -1
    for match in _OPTION_LINE.finditer(prompt):
        label = match.group(1)
        adjacent = options and prompt[end : match.start()].strip() == ""
        if label == chr(ord("A") + len(options)) and (not options or adjacent):
            if not options:
                start = match.start()
            options[label] = match.group(2)
            end = match.end()
        elif len(options) >= 2:
            break
        elif label == "A":
            options, start, end = {"A": match.group(2)}, match.start(), match.end()
        else:
            options = {}
    if len(options) < 2:
        return {label: f"option {label}" for label in "ABCD"}, len(prompt)
    return options, start


def _read_prompt(prompt: str) -> _Prompt:
    options, first_option_at = _option_block(prompt)
    lines = [_HEADING.sub("", line) for line in prompt[:first_option_at].splitlines()]
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", "\n".join(lines)) if p.strip()]
    stem = paragraphs[-1] if paragraphs else prompt.strip()
    return _Prompt(stem=stem[:600], options=options, chinese=bool(_CJK.search(prompt)))


_EN_RIGHT = [
    "this fits the presentation best",
    "this explains every key finding in the stem",
    "this matches the history, the signs and the time course",
]
_EN_WRONG = [
    "this does not explain the key findings",
    "the time course argues against it",
    "this would present differently",
    "it accounts for only part of the picture",
]
_ZH_RIGHT = ["最符合题干的临床表现", "能解释全部关键表现", "与病史、体征及病程均相符"]
_ZH_WRONG = ["不能解释关键表现", "病程特点不支持", "临床表现应有所不同", "只能解释部分表现"]

_EN_ENDINGS = [
    "The answer is ({L}).",
    "**Answer: {L}**",
    "Final answer: {L}. {T}",
    "Therefore, the correct answer is {L}.",
    "$\\boxed{{{L}}}$",
    "So I choose {L}.",
    "Answer: {T}",
]
# Conclusions that name the option by its text inside a sentence, as real models often do;
# {W} is another option's text, which the sentence sets aside.
_EN_TEXT_ENDINGS = [
    "I would choose {T}.",
    "I'd go with {T} here.",
    "{T} is the best choice.",
    "I think it's {T}.",
    "Not {W}; I would choose {T}.",
    "I would choose {T} rather than {W}.",
]
_ZH_TEXT_ENDINGS = [
    "我选择{T}。",
    "我认为是{T}。",
    "{T}最符合题意。",
    "排除{W}，我选择{T}。",
    "应该是{T}，而不是{W}。",
]
_ZH_ENDINGS = [
    "答案：{L}",
    "正确答案是{L}项。",
    "故选{L}。",
    "综上所述，答案为 {L}。",
    "$\\boxed{{{L}}}$",
    "因此本题应选{L}（{T}）。",
    "答案：{T}",
]
_MALFORMED_EN = [
    "[simulated] I cannot determine the answer from the information given.",
    "[simulated] Both options could be defended here; more information is needed.",
    "[simulated] Let me weigh the options one by one. First, the history suggests",
]
_MALFORMED_ZH = [
    "[simulated] 根据题干信息无法确定答案。",
    "[simulated] 这几个选项各有道理，需要更多信息才能判断。",
    "[simulated] 逐一分析各选项。首先，病史提示",
]


def _choose(rng: random.Random, key: str, labels: list[str], accuracy: float) -> str:
    if rng.random() < accuracy or len(labels) < 2:
        return key
    return rng.choice([label for label in labels if label != key])


@dataclass(frozen=True)
class _Difficulty:
    hard: bool
    accuracy: float
    # For a hard item: the text of the wrong option it keeps choosing.
    favourite: str | None


def _difficulty(config: SimulatorConfig, options: dict[str, str], key: str) -> _Difficulty:
    """How hard the item is, the same for every request about it: decided by the seed and the
    item's option texts (which survive the shuffling of later attempts)."""
    texts = "\x1f".join(sorted(options.values()))
    digest = hashlib.sha256(f"{config.seed}:{texts}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    if draw >= config.hard_share or config.accuracy >= 1.0:
        return _Difficulty(hard=False, accuracy=config.accuracy, favourite=None)
    wrong = sorted(text for label, text in options.items() if label != key)
    favourite = wrong[digest[8] % len(wrong)] if wrong else None
    return _Difficulty(
        hard=True, accuracy=config.accuracy**config.hard_exponent, favourite=favourite
    )


def _choose_for(
    rng: random.Random, key: str, options: dict[str, str], difficulty: _Difficulty
) -> str:
    labels = list(options)
    if rng.random() < difficulty.accuracy or len(labels) < 2:
        return key
    if difficulty.favourite is not None:
        return next(label for label, text in options.items() if text == difficulty.favourite)
    return rng.choice([label for label in labels if label != key])


def _discussion(rng: random.Random, prompt: _Prompt, chosen: str) -> list[str]:
    lines = []
    for label, option in prompt.options.items():
        if prompt.chinese:
            verdict = "正确" if label == chosen else "错误"
            reason = rng.choice(_ZH_RIGHT if label == chosen else _ZH_WRONG)
            lines.append(f"{label}. {option}：{verdict}，{reason}。")
        else:
            verdict = "correct" if label == chosen else "incorrect"
            reason = rng.choice(_EN_RIGHT if label == chosen else _EN_WRONG)
            lines.append(f"{label}. {option} — {verdict}: {reason}.")
    return lines


def _thinking(rng: random.Random, prompt: _Prompt, chosen: str) -> str:
    subject = prompt.stem[:160]
    if prompt.chinese:
        steps = "".join(f"{label}项？" for label in prompt.options)
        return f"[simulated] 题目问的是：{subject}……逐个看选项：{steps}对比之后，{chosen}项最符合。"
    steps = " ".join(f"What about {label}?" for label in prompt.options)
    return (
        f"[simulated] The question asks: {subject}… Let me weigh each option. {steps} "
        f"Comparing them, {chosen} fits best."
    )


def _ending(rng: random.Random, prompt: _Prompt, chosen: str) -> str:
    chinese = prompt.chinese
    template = rng.choice(
        _ZH_ENDINGS + _ZH_TEXT_ENDINGS if chinese else _EN_ENDINGS + _EN_TEXT_ENDINGS
    )
    others = [text for label, text in prompt.options.items() if label != chosen]
    other = rng.choice(others) if others else ""
    if "{W}" in template and not _reads_apart(prompt.options[chosen], other):
        template = "答案：{L}" if prompt.chinese else "The answer is ({L})."
    return template.format(L=chosen, T=prompt.options[chosen], W=other)


def _reads_apart(chosen: str, other: str) -> bool:
    """Whether two option texts can both stand in one sentence without one reading as part
    of the other ("Vitamin B12" and "Vitamin B12 deficiency" cannot)."""
    a, b = chosen.casefold(), other.casefold()
    return bool(a and b) and a not in b and b not in a


def _explanation(rng: random.Random, prompt: _Prompt, chosen: str, task: str) -> str:
    if prompt.chinese:
        intro = "根据专家意见修订的解析：" if task == "regenerate" else "逐项分析如下："
    else:
        intro = (
            "Revised explanation, following the reviewers' guidance:"
            if task == "regenerate"
            else "Let's go through each option."
        )
    body = "\n".join(_discussion(rng, prompt, chosen))
    return f"{intro}\n\n{body}\n\n{_ending(rng, prompt, chosen)}\n\n[simulated]"


def _short_answer(rng: random.Random, prompt: _Prompt, chosen: str) -> str:
    if prompt.chinese:
        reason = rng.choice(_ZH_RIGHT)
        return f"{chosen}项{reason}。{_ending(rng, prompt, chosen)} [simulated]"
    reason = rng.choice(_EN_RIGHT)
    return f"Option {chosen}: {reason}. {_ending(rng, prompt, chosen)} [simulated]"


def _pool(words: str) -> list[str]:
    return words.split("|")


# Building blocks for synthesized vignettes; varied enough that distinct questions do not look
# alike to near-duplicate detection, while the planted near-duplicates do.
_EN_SETTINGS = _pool(
    "emergency department|outpatient clinic|medical ward|intensive care unit|"
    "rural health centre|antenatal clinic|surgical ward|paediatric clinic|"
    "geriatric day unit|occupational health service"
)
_EN_COMPLAINTS = _pool(
    "fever|productive cough|chest pain|shortness of breath|headache|abdominal pain|"
    "vomiting|diarrhoea|joint swelling|weight loss|night sweats|palpitations|"
    "dizziness|blurred vision|a rash|lower back pain|haematuria|jaundice|fatigue|"
    "leg oedema|confusion|dysphagia|polyuria|numbness of the feet"
)
_EN_QUESTIONS = {
    "diagnosis": "What is the most likely diagnosis?",
    "mechanism": "Which mechanism best explains these findings?",
    "treatment": "What is the most appropriate initial treatment?",
    "complication": "Which complication is this patient most at risk of?",
    "investigation": "Which investigation should be performed next?",
    "prognosis": "Which factor most strongly affects the prognosis?",
    "pharmacology": "Which adverse effect is most likely with the first-line drug?",
    "prevention": "Which measure would best have prevented this presentation?",
}
_ZH_SETTINGS = _pool(
    "急诊科|门诊|内科病房|重症监护室|乡镇卫生院|产科门诊|外科病房|儿科门诊|老年科|职业病科"
)
_ZH_COMPLAINTS = _pool(
    "发热|咳嗽咳痰|胸痛|呼吸困难|头痛|腹痛|呕吐|腹泻|关节肿胀|体重下降|盗汗|心悸|头晕|视物模糊|皮疹|腰痛|血尿|黄疸|乏力|下肢水肿|意识模糊|"
    "吞咽困难|多尿|双足麻木"
)
_ZH_QUESTIONS = {
    "诊断": "最可能的诊断是",
    "机制": "上述表现最可能的机制是",
    "治疗": "最合适的初始治疗是",
    "并发症": "该患者最易发生的并发症是",
    "检查": "下一步应首选的检查是",
    "预后": "影响预后最重要的因素是",
    "药理": "一线药物最可能的不良反应是",
    "预防": "最能预防此情况的措施是",
}
_OPTION_POOL_EN = _pool(
    "Community-acquired pneumonia|Pulmonary embolism|Acute pericarditis|"
    "Aortic dissection|Diabetic ketoacidosis|Thyrotoxicosis|"
    "Iron deficiency anaemia|Acute pancreatitis|Nephrotic syndrome|"
    "Reactive arthritis|Subarachnoid haemorrhage|Addison disease|"
    "Chronic kidney disease|Heart failure|Hepatitis B infection|Sarcoidosis"
)
_OPTION_POOL_ZH = _pool(
    "社区获得性肺炎|肺栓塞|急性心包炎|主动脉夹层|糖尿病酮症酸中毒|甲状腺毒症|缺铁性贫血|急性胰腺炎|肾病综合征|反应性关节炎|蛛网膜下腔出血|"
    "肾上腺皮质功能减退症|慢性肾脏病|心力衰竭|乙型肝炎|结节病"
)


def _permuted_numbers(rng: random.Random, stem: str) -> list[int]:
    """Numbers from the seed's stem, nudged, to seed the new vignettes' ages and vital signs."""
    found = [float(n) for n in _NUMBER.findall(stem)][:6]
    return [max(1, round(n * rng.uniform(0.8, 1.25))) for n in found]


def _vignette(rng: random.Random, chinese: bool, hints: list[int]) -> tuple[str, str]:
    age = hints.pop(0) if hints and 16 <= hints[0] <= 95 else rng.randint(18, 88)
    temp = round(rng.uniform(36.2, 40.1), 1)
    pulse, sys_bp, dia_bp, days = (
        rng.randint(56, 132),
        rng.randint(92, 178),
        rng.randint(52, 104),
        rng.randint(1, 21),
    )
    if chinese:
        aspect = rng.choice(list(_ZH_QUESTIONS))
        one, two = rng.sample(_ZH_COMPLAINTS, 2)
        sex = rng.choice(["男", "女"])
        stem = (
            f"患者{sex}，{age}岁，因{one}伴{two}{days}天就诊于{rng.choice(_ZH_SETTINGS)}。"
            f"体温{temp}℃，脉搏{pulse}次/分，血压{sys_bp}/{dia_bp}mmHg。{_ZH_QUESTIONS[aspect]}"
        )
        return stem, aspect
    aspect = rng.choice(list(_EN_QUESTIONS))
    one, two = rng.sample(_EN_COMPLAINTS, 2)
    sex = rng.choice(["man", "woman"])
    setting = rng.choice(_EN_SETTINGS)
    opening = rng.choice(
        [
            f"A {age}-year-old {sex} presents to the {setting} with {one} and {two} "
            f"for {days} days.",
            f"A {sex} aged {age} is seen in the {setting} after {days} days of {one}; "
            f"{'he' if sex == 'man' else 'she'} also reports {two}.",
            f"In the {setting}, a {age}-year-old {sex} describes {one} that began {days} days ago, "
            f"together with {two}.",
        ]
    )
    stem = (
        f"{opening} Temperature is {temp} °C, pulse {pulse}/min and blood pressure "
        f"{sys_bp}/{dia_bp} mmHg. {_EN_QUESTIONS[aspect]}"
    )
    return stem, aspect


def _near_duplicate(rng: random.Random, stem: str) -> str:
    """The same question with one number changed slightly."""
    numbers = list(_NUMBER.finditer(stem))
    if not numbers:
        return stem + " "
    target = rng.choice(numbers)
    value = target.group(0)
    changed = str(int(float(value)) + rng.choice([-1, 1])) if "." not in value else value + "5"
    return stem[: target.start()] + changed + stem[target.end() :]


def _synthesized(rng: random.Random, prompt: _Prompt, count: int) -> list[dict[str, Any]]:
    hints = _permuted_numbers(rng, prompt.stem)
    questions: list[dict[str, Any]] = []
    for _ in range(count):
        if questions and rng.random() < 0.1:
            twin = dict(rng.choice(questions))
            twin["stem"] = _near_duplicate(rng, twin["stem"])
            questions.append(twin)
            continue
        stem, aspect = _vignette(rng, prompt.chinese, hints)
        size = 5 if rng.random() < 0.3 else 4
        texts = rng.sample(_OPTION_POOL_ZH if prompt.chinese else _OPTION_POOL_EN, size)
        options = {chr(ord("A") + i): t for i, t in enumerate(texts)}
        answer = rng.choice(list(options))
        sub = _Prompt(stem=stem, options=options, chinese=prompt.chinese)
        # Synthesized questions become items, so their explanations carry the label too.
        cot = "\n".join([*_discussion(rng, sub, answer), _ending(rng, sub, answer), "[simulated]"])
        questions.append(
            {"stem": stem, "options": options, "answer": answer, "cot": cot, "aspect": aspect}
        )
    return questions


def _synthesis_reply(
    *,
    rng: random.Random,
    parsed,
    key: str,
    count: int,
    malformed: bool,
    json_mode: bool,
    schema_mode: bool,
) -> _Reply:
    """New questions in the seed's family: bare JSON in JSON mode, else JSON in a fenced
    block after a line of prose; cut off mid-string when `malformed`."""
    reasoning = (
        "[simulated] 提取关键知识点与推理步骤，改写为考查其他方面的新题。"
        if parsed.chinese
        else "[simulated] Extract the key facts and reasoning steps, then write new "
        "questions on other aspects."
    )
    if malformed:
        return _Reply('```json\n{"questions": [{"stem": "' + parsed.stem[:40], reasoning, key, None)
    questions = _synthesized(rng, parsed, count)
    if schema_mode:
        # The strict schema lists options in order instead of keying them by letter.
        questions = [q | {"options": list(q["options"].values())} for q in questions]
    payload = json.dumps({"questions": questions}, ensure_ascii=False, indent=1)
    intro = (
        f"[simulated] {count} 道新题：" if parsed.chinese else f"[simulated] {count} new questions:"
    )
    content = payload if json_mode else f"{intro}\n```json\n{payload}\n```"
    return _Reply(content, reasoning, key, None)


def _compose(
    *,
    rng: random.Random,
    task: str,
    prompt: str,
    key: str,
    accuracy: float,
    count: int,
    malformed: bool,
    json_mode: bool,
    config: SimulatorConfig | None = None,
    ignored_format: bool = False,
    schema_mode: bool = False,
) -> _Reply:
    parsed = _read_prompt(prompt)
    labels = list(parsed.options)
    if key not in parsed.options:
        # Without the key header the simulator knows nothing, so any option is as good.
        key = rng.choice(labels)
    if config is None:
        config = SimulatorConfig(accuracy=accuracy, hard_share=0.0)
    difficulty = _difficulty(config, parsed.options, key)

    if task == "synthesize" and ignored_format:
        # A server that ignores the structured-output mode asked for, with a model that then
        # answers the seed question instead of writing JSON: what real endpoints did.
        chosen = _choose_for(rng, key, parsed.options, difficulty)
        content = _explanation(rng, parsed, chosen, "cot")
        return _Reply(content, _thinking(rng, parsed, chosen), key, None)

    if task == "synthesize":
        return _synthesis_reply(
            rng=rng,
            parsed=parsed,
            key=key,
            count=count,
            malformed=malformed,
            json_mode=json_mode,
            schema_mode=schema_mode,
        )

    if malformed:
        content = rng.choice(_MALFORMED_ZH if parsed.chinese else _MALFORMED_EN)
        return _Reply(content, "[simulated] …", key, None)
    chosen = _choose_for(rng, key, parsed.options, difficulty)
    reasoning = _thinking(rng, parsed, chosen)
    if task == "reanswer":
        content = _short_answer(rng, parsed, chosen)
    else:
        content = _explanation(rng, parsed, chosen, task)
    if json_mode:
        content = json.dumps({"explanation": content, "answer": chosen}, ensure_ascii=False)
    return _Reply(content, reasoning, key, chosen)


# --- judge mode ---------------------------------------------------------------------------------

JUDGE_DIMENSIONS = (
    "medical_correctness",
    "reasoning_structure",
    "information_sufficiency",
    "terminology_clarity",
    "clinical_utility",
)


def judge_truth(*, key: str, concluded: str, steps: int, stem: str) -> dict[str, Any]:
    """The simulated truth of a CoT: what a perfect judge would say. Off-key CoTs are wrong
    from their last step; the weaker dimensions of sound ones come from the question's text,
    so the same item has the same truth in every run."""
    wrong = bool(key) and bool(concluded) and concluded != key
    h = int(hashlib.sha256(stem.encode()).hexdigest()[:8], 16)
    scores = {d: 2 - ((h >> (3 * i)) % 7 == 0) for i, d in enumerate(JUDGE_DIMENSIONS)}
    if wrong:
        scores |= {"medical_correctness": 0, "clinical_utility": 0, "reasoning_structure": 1}
    return {
        "scores": scores,
        "first_wrong_step": max(1, steps) if wrong else None,
        "answer": key,
    }


def _judge_reply(
    rng: random.Random,
    config: SimulatorConfig,
    prompt: str,
    key: str,
    concluded: str,
    steps: str,
    *,
    malformed: bool,
    json_mode: bool,
) -> _Reply:
    parsed = _read_prompt(prompt)
    n_steps = int(steps) if steps.isdigit() else 0
    truth = judge_truth(
        key=key, concluded=concluded.strip().upper(), steps=n_steps, stem=parsed.stem
    )
    reasoning = (
        "[simulated] 按评分标准逐项核对。"
        if parsed.chinese
        else "[simulated] Check each rubric dimension in turn."
    )
    if malformed:
        return _Reply('{"scores": {"medical_correctness": 2', reasoning, key, None)
    agree = config.judge_agreement
    scores = {
        d: s if rng.random() < agree else rng.choice([0, 1, 2]) for d, s in truth["scores"].items()
    }
    step = truth["first_wrong_step"]
    if rng.random() >= agree and n_steps:
        step = rng.choice([None, rng.randint(1, n_steps)])
    labels = list(parsed.options)
    answer = key if key in labels and rng.random() < agree else rng.choice(labels)
    word = {0: "inadequate", 1: "partly adequate", 2: "adequate"}
    word_zh = {0: "不合格", 1: "部分合格", 2: "合格"}
    rationales = {
        d: (
            f"[simulated] 该维度{word_zh[s]}。"
            if parsed.chinese
            else f"[simulated] {word[s]} on this dimension."
        )
        for d, s in scores.items()
    }
    body = json.dumps(
        {"scores": scores, "rationales": rationales, "first_wrong_step": step, "answer": answer},
        ensure_ascii=False,
    )
    content = body if json_mode else f"[simulated]\n```json\n{body}\n```"
    return _Reply(content, reasoning, key, None)


# --- the app ------------------------------------------------------------------------------------

STATE_KEY = web.AppKey("medcot_sim_state", _State)
OUTCOME_KEY = web.RequestKey("medcot_sim_outcome", str)


async def _models(request: web.Request) -> web.Response:
    model = request.app[STATE_KEY].config.model
    entry = {"id": model, "object": "model", "created": 0, "owned_by": "medcot-simulator"}
    if "model_id" in request.match_info:
        if request.match_info["model_id"] != model:
            return _error(
                404,
                f"The model '{request.match_info['model_id']}' does not exist",
                kind="invalid_request_error",
                code="model_not_found",
            )
        return web.json_response(entry)
    return web.json_response({"object": "list", "data": [entry]})


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "simulated": True})


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].snapshot())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"status": "reset", "simulated": True})


async def _chat(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    # A client that gives up first cancels the handler; the outcome stays "cancelled" unless the
    # handler got further.
    request[OUTCOME_KEY] = "cancelled"
    try:
        response, request[OUTCOME_KEY] = await _chat_inner(request, state)
        return response
    finally:
        state.in_flight -= 1
        state.outcomes[request[OUTCOME_KEY]] += 1


def _last_user_prompt(messages: list[dict]) -> str:
    """The text of the last user message (of the last message when none is the user's)."""
    prompt = _message_text(messages[-1].get("content"))
    for message in reversed(messages):
        if message.get("role") == "user":
            prompt = _message_text(message.get("content"))
            break
    return prompt


def _reply_for(
    request: web.Request,
    *,
    rng: random.Random,
    config: SimulatorConfig,
    payload: dict,
    task: str,
    key: str,
    count_header: str,
    fault: str | None,
) -> _Reply:
    """The reply to a request that got through: in the structured mode asked for if this
    server honours it, malformed or empty when the fault drawn says so."""
    prompt = _last_user_prompt(payload["messages"])
    asked = str((payload.get("response_format") or {}).get("type") or "text")
    honoured = asked in config.structured
    if task == "judge":
        facts = (request.headers.get(f"X-MedCoT-Sim-{n}", "") for n in ("Concluded", "Steps"))
        reply = _judge_reply(
            rng, config, prompt, key, *facts, malformed=fault == "malformed", json_mode=honoured
        )
    else:
        reply = _compose(
            rng=rng,
            task=task,
            prompt=prompt,
            key=key,
            accuracy=config.accuracy,
            count=_parse_count(count_header, prompt),
            malformed=fault == "malformed",
            json_mode=honoured,
            config=config,
            ignored_format=asked != "text" and not honoured,
            schema_mode=honoured and asked == "json_schema",
        )
    if fault == "empty":
        # A 200 with nothing in it, or a gateway's error page passed on as the content.
        page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
        reply = _Reply(rng.choice(["", page]), "", key, None)
    return reply


async def _chat_inner(request: web.Request, state: _State) -> tuple[web.StreamResponse, str]:
    config = state.config
    if config.api_key and request.headers.get("Authorization") != f"Bearer {config.api_key}":
        return _error(
            401, "Incorrect API key provided.", kind="invalid_request_error", code="invalid_api_key"
        ), "unauthorized"
    body = await request.read()
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
        problem: str | None = "The request body is not valid JSON."
    else:
        problem = _validate(payload)
    if problem:
        return _error(400, problem, kind="invalid_request_error"), "bad_request"

    task = request.headers.get("X-MedCoT-Task", "").strip().lower() or "cot"
    if task not in TASKS:
        return _error(
            400, f"X-MedCoT-Task must be one of {', '.join(TASKS)}", kind="invalid_request_error"
        ), "bad_request"
    key = request.headers.get("X-MedCoT-Sim-Key", "").strip().upper()
    count_header = request.headers.get("X-MedCoT-Sim-Count", "").strip()
    state.tasks[task] += 1
    rng = _request_rng(state, body, (task, key, count_header))

    fault = _fault(config, rng)
    if fault in _FAULT_REPLIES:
        status, message, kind, code = _FAULT_REPLIES[fault]
        response = _error(status, message, kind=kind, code=code)
        if status == 429:
            response.headers["Retry-After"] = str(config.retry_after)
        return response, fault
    if fault == "timeout":
        request[OUTCOME_KEY] = fault
        await asyncio.sleep(config.timeout_hold)
        # Drop the connection without a reply, as an overloaded upstream does.
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError

    reply = _reply_for(
        request,
        rng=rng,
        config=config,
        payload=payload,
        task=task,
        key=key,
        count_header=count_header,
        fault=fault,
    )
    if reply.conclusion and key:
        state.conclusions["key" if reply.conclusion == reply.key else "other"] += 1

    await asyncio.sleep(_latency(config, rng))

    result = _completion(config, payload, reply, rng)
    truncated = result["choices"][0]["finish_reason"] == "length"
    return web.json_response(result, dumps=_dumps), fault or ("truncated" if truncated else "ok")


def _truncate(text_: str, tokens: int) -> str:
    """The longest prefix of the text that costs at most `tokens` by _count_tokens."""
    cost = 0.0
    for i, ch in enumerate(text_):
        cost += 1 if _CJK.match(ch) else 0.25
        if cost > tokens:
            return text_[:i]
    return text_


def _completion(
    config: SimulatorConfig, payload: dict[str, Any], reply: _Reply, rng: random.Random
) -> dict[str, Any]:
    """The response body, shaped like OpenAI's; a max_tokens budget (which, as on reasoning
    models, includes the reasoning) cuts the reply short with finish_reason "length"."""
    content, reasoning = reply.content, reply.reasoning if config.reasoning != "none" else ""
    reasoning_tokens = _count_tokens(reasoning)
    completion_tokens = reasoning_tokens + _count_tokens(content)
    finish_reason = "stop"
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if limit and completion_tokens > limit:
        reasoning = _truncate(reasoning, limit)
        reasoning_tokens = _count_tokens(reasoning)
        content = _truncate(content, max(0, limit - reasoning_tokens))
        completion_tokens = reasoning_tokens + _count_tokens(content)
        finish_reason = "length"

    message: dict[str, Any] = {"role": "assistant", "content": content}
    if config.reasoning == "deepseek":
        message["reasoning_content"] = reasoning
    elif config.reasoning == "vllm":
        message["reasoning"] = reasoning
    elif config.reasoning == "think":
        closing = "\n</think>\n\n" if finish_reason == "stop" or content else ""
        message["content"] = f"<think>\n{reasoning}{closing}{content}"
    elif config.reasoning == "think-close":
        closing = "\n</think>\n\n" if finish_reason == "stop" or content else ""
        message["content"] = f"{reasoning}{closing}{content}"
    prompt_tokens = sum(_count_tokens(_message_text(m.get("content"))) for m in payload["messages"])
    requested = payload["model"]
    return {
        "id": f"chatcmpl-sim-{rng.getrandbits(64):016x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": requested if requested.startswith("sim-") else config.model,
        "system_fingerprint": f"sim-seed-{config.seed}",
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
        },
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


_COUNT_IN_PROMPT = re.compile(r"(\d{1,2})\s*(?:new\s+)?(?:questions|道|个|题)", re.IGNORECASE)


def _parse_count(header: str, prompt: str) -> int:
    if header.isdigit():
        return max(1, min(int(header), 50))
    found = _COUNT_IN_PROMPT.search(prompt)
    return max(1, min(int(found.group(1)), 50)) if found else 3


async def _label_response(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[SIMULATED_HEADER] = "true"


def build_app(config: SimulatorConfig) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[STATE_KEY] = _State(config=config)
    app.on_response_prepare.append(_label_response)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model_id}", _models)
    app.router.add_post("/v1/chat/completions", _chat)
    app.router.add_get("/health", _health)
    app.router.add_get("/sim/stats", _stats)
    app.router.add_post("/sim/reset", _reset)
    return app


# --- running ------------------------------------------------------------------------------------


def _bind(config: SimulatorConfig) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def _start(config: SimulatorConfig) -> tuple[web.AppRunner, web.Application, int]:
    app = build_app(config)
    runner = web.AppRunner(
        app,
        # A client that gives up (its timeout) cancels the handler instead of leaving it asleep.
        handler_cancellation=True,
        shutdown_timeout=1.0,
        access_log=logging.getLogger("aiohttp.access") if config.access_log else None,
    )
    await runner.setup()
    sock = _bind(config)
    site = web.SockSite(runner, sock, backlog=4096)
    await site.start()
    return runner, app, sock.getsockname()[1]


async def serve_forever(
    config: SimulatorConfig, *, ready: Callable[[int], None] | None = None
) -> None:
    """Serve until cancelled; ``ready(port)`` is called once the socket listens."""
    runner, _app, port = await _start(config)
    try:
        if ready is not None:
            ready(port)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class SimulatorHandle:
    """A simulator serving from a background thread; use as a context manager or call stop()."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._app: web.Application | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="medcot-llmsim", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None:
            raise self._error
        if not self._ready.is_set():
            raise RuntimeError("the simulator did not start within 30 s")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._runner, self._app, self.port = self._loop.run_until_complete(_start(self.config))
        except BaseException as exc:  # handed to the starting thread, which re-raises it
            self._error = exc
            self._loop.close()
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    @property
    def base_url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        assert self._app is not None

        async def snap() -> dict[str, Any]:
            return self._app[STATE_KEY].snapshot()  # type: ignore[index]

        return asyncio.run_coroutine_threadsafe(snap(), self._loop).result(timeout=10)

    def reset(self) -> None:
        assert self._app is not None

        async def clear() -> None:
            self._app[STATE_KEY].reset()  # type: ignore[index]

        asyncio.run_coroutine_threadsafe(clear(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(config: SimulatorConfig | None = None, **overrides: Any) -> SimulatorHandle:
    """Start a simulator in a daemon thread (``port=0`` picks a free port) and return its handle."""
    base = config or SimulatorConfig(port=0)
    if overrides:
        base = SimulatorConfig(**(asdict(base) | overrides))
    return SimulatorHandle(base)
