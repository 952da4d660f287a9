"""The LLM side: endpoint profiles, versioned prompts, batch runs and their jobs, and the
append-only logs of every model call and every re-answer attempt.

API keys are never stored here: a profile names the environment variable that holds the key.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from medcot.models import AppendOnlyModel, Item, Language, Project

# A successful call whose reply held nothing usable (a synthesis reply with no valid question)
# is logged with this prefix in its `error`, so the run page can count such replies and show them.
UNUSABLE_PREFIX = "Unusable reply: "


def validate_base_url(value: str) -> None:
    parts = urlsplit(value or "")
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError(
            _("Enter an http:// or https:// URL with a host, such as https://api.example.com/v1.")
        )


class Task(models.TextChoices):
    COT = "cot", _("Chain of thought")
    SYNTHESIZE = "synthesize", _("Question synthesis")
    REANSWER = "reanswer", _("Re-answer")
    REGENERATE = "regenerate", _("Guided regeneration")
    JUDGE = "judge", _("Machine judge")


class LLMProfile(models.Model):
    """One OpenAI-compatible endpoint and how to call it."""

    # The settings a person edits, in the order the form and the API show them.
    EDITABLE_FIELDS = (
        "name",
        "base_url",
        "model",
        "alternate_models",
        "api_key_env",
        "structured_output",
        "max_in_flight",
        "timeout_seconds",
        "max_retries",
        "temperature",
        "top_p",
        "max_tokens",
        "price_input_per_m",
        "price_output_per_m",
        "simulated",
        "enabled",
    )

    name = models.CharField(_("name"), max_length=100, unique=True)
    # Not a URLField: Django's URL validator refuses single-label hosts ("http://gpu-box:8000/v1"),
    # which is how servers on a hospital's own network are often named.
    base_url = models.CharField(_("base URL"), max_length=500, validators=[validate_base_url])
    model = models.CharField(_("model"), max_length=200)
    # Other models to rotate through on later re-answer attempts (optional).
    alternate_models = models.JSONField(_("alternate models for re-answering"), default=list)
    api_key_env = models.CharField(
        _("name of the environment variable holding the API key"),
        max_length=100,
        blank=True,
        help_text=_("Only the variable's name is stored; the key itself stays in the environment."),
    )
    max_in_flight = models.PositiveIntegerField(_("max requests in flight"), default=16)
    timeout_seconds = models.FloatField(_("timeout per call (seconds)"), default=600.0)
    max_retries = models.PositiveSmallIntegerField(_("retries on transient errors"), default=6)
    temperature = models.FloatField(_("temperature"), null=True, blank=True)
    top_p = models.FloatField(_("top p"), null=True, blank=True)
    max_tokens = models.PositiveIntegerField(_("max output tokens"), null=True, blank=True)

    class Structured(models.TextChoices):
        # What `response_format` synthesis calls send. Servers differ: some honour a strict
        # JSON schema but ignore json_object, others the reverse, many neither. Whatever the
        # mode, the reply is validated against the schema of a synthesis reply.
        JSON_SCHEMA = "json_schema", _("JSON schema (strict)")
        JSON_OBJECT = "json_object", _("JSON object")
        NONE = "none", _("None (the prompt asks for JSON)")

    structured_output = models.CharField(
        _("structured output"),
        max_length=12,
        choices=Structured.choices,
        default=Structured.NONE,
        help_text=_(
            'How synthesis calls ask for JSON. "Test endpoint" finds which mode the server '
            "honours and sets it."
        ),
    )
    enabled = models.BooleanField(
        _("enabled"), default=True, help_text=_("Disabled endpoints cannot start new runs.")
    )
    # The last "Test endpoint" result: when, ok, latency, reasoning style, structured-output
    # mode found, error in plain words.
    last_test = models.JSONField(_("last test"), default=dict, blank=True)
    price_input_per_m = models.DecimalField(
        _("price per million input tokens"), max_digits=10, decimal_places=4, default=Decimal(0)
    )
    price_output_per_m = models.DecimalField(
        _("price per million output tokens"), max_digits=10, decimal_places=4, default=Decimal(0)
    )
    simulated = models.BooleanField(
        _("simulated"),
        default=False,
        help_text=_("The built-in simulator: the client tells it the answer key in headers."),
    )
    is_default = models.BooleanField(_("default profile"), default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_in_flight__gte=1) & Q(max_in_flight__lte=4096),
                name="llmprofile_max_in_flight_1_4096",
            ),
            models.CheckConstraint(
                condition=Q(timeout_seconds__gt=0), name="llmprofile_timeout_positive"
            ),
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="llmprofile_one_default"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.model})"

    def models_for_rotation(self) -> list[str]:
        return [self.model, *[m for m in self.alternate_models if m and m != self.model]]


class PromptVersion(AppendOnlyModel):
    """One version of one prompt template. Editing a prompt appends a new version; the newest
    version of (task, variant, language) is the one in use, and outputs record which one
    made them."""

    class Source(models.TextChoices):
        FILE = "file", _("Default file")
        ADMIN = "admin", _("Edited by an admin")

    task = models.CharField(max_length=20, choices=Task.choices)
    variant = models.CharField(max_length=40, default="default")
    language = models.CharField(max_length=8, choices=Language.choices)
    number = models.PositiveIntegerField()
    system = models.TextField(blank=True)
    template = models.TextField()
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.FILE)
    # For file defaults: the digest of the file, so an edited file becomes a new version.
    digest = models.CharField(max_length=64, blank=True)
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["task", "variant", "language", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "variant", "language", "number"], name="prompt_unique_number"
            ),
            models.CheckConstraint(condition=Q(number__gte=1), name="prompt_number_gte_1"),
            models.CheckConstraint(condition=~Q(template=""), name="prompt_template_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.task}/{self.variant}/{self.language} v{self.number}"

    @property
    def label(self) -> str:
        return str(self)


class Stage(models.TextChoices):
    COT = "cot", _("Generate CoTs")
    EXPAND = "expand", _("Expand seeds")
    REANSWER = "reanswer", _("Re-answer")
    JUDGE = "judge", _("Machine judge (rubric scores)")
    ALL = "all", _("Whole pipeline, hands-off")


class Run(models.Model):
    """A batch of work on one project, with its own progress and statistics."""

    class State(models.TextChoices):
        RUNNING = "running", _("Running")
        PAUSED = "paused", _("Paused")
        CANCELLED = "cancelled", _("Cancelled")
        DONE = "done", _("Finished")

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="llm_runs")
    profile = models.ForeignKey(LLMProfile, on_delete=models.PROTECT, related_name="runs")
    stage = models.CharField(max_length=12, choices=Stage.choices)
    # Hands-off: each item flows on to the next machine stage as soon as its current one ends.
    hands_off = models.BooleanField(default=False)
    state = models.CharField(max_length=12, choices=State.choices, default=State.RUNNING)
    # Why the run is paused (e.g. the provider is out of balance), shown on the run page.
    message = models.TextField(blank=True)
    limit = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "state"], name="run_project_state")]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.get_stage_display()})"

    @property
    def is_active(self) -> bool:
        return self.state in {self.State.RUNNING, self.State.PAUSED}


class Job(models.Model):
    """One unit of a run: one stage for one item. The unit a Celery task claims and finishes."""

    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Running")
        DONE = "done", _("Done")
        ERROR = "error", _("Error")
        CANCELLED = "cancelled", _("Cancelled")

    class Kind(models.TextChoices):
        COT = "cot", _("CoT")
        EXPAND = "expand", _("Expansion")
        REANSWER = "reanswer", _("Re-answer")
        REGENERATE = "regenerate", _("Guided regeneration")
        JUDGE = "judge", _("Machine judge")

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="jobs")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="llm_jobs")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    # Unique per run and stage, except guided regenerations (each request is its own job).
    key = models.CharField(max_length=80, unique=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    # The Celery task id that holds the claim; a redelivered message carries the same id.
    claim = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    # Set once the job's message has gone to the broker. A queued job without it was committed
    # by a process that died before it could send the message; the sweep sends it again.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["run", "state"], name="job_run_state"),
            models.Index(
                fields=["updated_at"],
                condition=models.Q(state="queued", dispatched_at__isnull=True),
                name="job_undispatched",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} for item {self.item_id}"


class LLMCall(AppendOnlyModel):
    """One HTTP request to a model, successful or not. Append-only."""

    class Outcome(models.TextChoices):
        OK = "ok", _("OK")
        TRANSIENT = "transient", _("Transient error")
        FATAL = "fatal", _("Error")
        PAYMENT = "payment", _("Out of balance")

    profile = models.ForeignKey(LLMProfile, on_delete=models.PROTECT, related_name="calls")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    item = models.ForeignKey(
        Item, null=True, blank=True, on_delete=models.PROTECT, related_name="llm_calls"
    )
    task = models.CharField(max_length=20, choices=Task.choices)
    prompt_version = models.ForeignKey(
        PromptVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    model = models.CharField(max_length=200)
    try_number = models.PositiveSmallIntegerField(default=1)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    messages = models.JSONField(default=list)
    reply = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=40, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=Decimal(0))
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["run", "outcome"], name="llmcall_run_outcome"),
            models.Index(fields=["item", "task"], name="llmcall_item_task"),
        ]

    def __str__(self) -> str:
        return f"{self.task} call {self.pk} ({self.outcome})"


class ReanswerAttempt(AppendOnlyModel):
    """One try by the model to answer an item without its explanation. Append-only."""

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="reanswer_attempts")
    number = models.PositiveSmallIntegerField()
    variant = models.CharField(max_length=40)
    model = models.CharField(max_length=200)
    # The labels of the item's options in the order shown, e.g. "CADBE": the model's "A" was
    # the item's C.
    option_order = models.CharField(max_length=5)
    raw_answer = models.CharField(max_length=1, blank=True)
    answer = models.CharField(max_length=1, blank=True)
    parsed = models.BooleanField()
    parse_method = models.CharField(max_length=20, blank=True)
    correct = models.BooleanField()
    reply = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    prompt_version = models.ForeignKey(
        PromptVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    llm_call = models.ForeignKey(
        LLMCall, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item", "number"]
        constraints = [
            models.UniqueConstraint(fields=["item", "number"], name="attempt_unique_number"),
            models.CheckConstraint(
                condition=Q(number__gte=1) & Q(number__lte=40), name="attempt_number_1_40"
            ),
            # An unparseable reply is never a wrong answer, and never a right one either.
            models.CheckConstraint(
                condition=Q(parsed=True) | (Q(correct=False) & Q(answer="")),
                name="attempt_unparsed_not_judged",
            ),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} on item {self.item_id}"


class NearDuplicateBand(models.Model):
    """Locality-sensitive hash bands of each item's question text, so a synthesized question
    can be checked against the whole project in a few indexed lookups."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    band = models.PositiveSmallIntegerField()
    value = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "band"], name="neardup_unique_item_band")
        ]
        indexes = [models.Index(fields=["project", "band", "value"], name="neardup_lookup")]

    def __str__(self) -> str:
        return f"band {self.band} of item {self.item_id}"


JUDGE_DIMENSIONS = (
    "medical_correctness",
    "reasoning_structure",
    "information_sufficiency",
    "terminology_clarity",
    "clinical_utility",
)


class JudgeScore(AppendOnlyModel):
    """A machine judge's rubric scores for one item version: five dimensions 0-2 with a short
    rationale each, the first wrong step of the CoT and the answer it holds correct.

    Machine scores, kept apart from the experts' `RubricScore` rows: they are never counted as
    a human verdict, never shown to a person before their own verdict (see review.judge), and
    released only in columns named as the judge's. Append-only: one row per (version, profile,
    prompt version), so a job run twice stores nothing new."""

    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="judge_scores")
    version = models.ForeignKey("medcot.ItemVersion", on_delete=models.PROTECT, related_name="+")
    profile = models.ForeignKey(LLMProfile, on_delete=models.PROTECT, related_name="judge_scores")
    prompt_version = models.ForeignKey(PromptVersion, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=200)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    llm_call = models.ForeignKey(
        LLMCall, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The rubric guide the prompt was built from, as "<language> v<version>".
    rubric_guide = models.CharField(max_length=40, blank=True)
    medical_correctness = models.PositiveSmallIntegerField()
    reasoning_structure = models.PositiveSmallIntegerField()
    information_sufficiency = models.PositiveSmallIntegerField()
    terminology_clarity = models.PositiveSmallIntegerField()
    clinical_utility = models.PositiveSmallIntegerField()
    # {dimension: short rationale}
    rationales = models.JSONField(default=dict)
    # The 1-based number of the first wrong step of the CoT; null when the judge found none.
    first_wrong_step = models.PositiveSmallIntegerField(null=True, blank=True)
    answer = models.CharField(max_length=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            *[
                models.CheckConstraint(
                    condition=Q(**{f"{d}__gte": 0}) & Q(**{f"{d}__lte": 2}),
                    name=f"judge_{d}_0_2",
                )
                for d in JUDGE_DIMENSIONS
            ],
            models.CheckConstraint(
                condition=Q(answer__in=["A", "B", "C", "D", "E"]), name="judge_answer_valid"
            ),
            models.CheckConstraint(
                condition=Q(first_wrong_step__isnull=True) | Q(first_wrong_step__gte=1),
                name="judge_first_wrong_step_gte_1",
            ),
            models.UniqueConstraint(
                fields=["version", "profile", "prompt_version"], name="judge_once_per_version"
            ),
        ]
        indexes = [models.Index(fields=["item", "profile"], name="judge_item_profile")]

    def __str__(self) -> str:
        return f"judge scores for item {self.item_id} ({self.model})"

    def scores(self) -> dict[str, int]:
        return {d: getattr(self, d) for d in JUDGE_DIMENSIONS}

    @property
    def risk(self) -> int:
        """How far below full marks the judge put the item: 0 (all 2s) to 10 (all 0s)."""
        return sum(2 - s for s in self.scores().values())
