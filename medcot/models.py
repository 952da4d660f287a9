"""The core domain: projects, items, their append-only content versions and the event log.

An item's status is changed only by `medcot.lifecycle.transition()`. Content is never edited in
place: every edit is a new `ItemVersion`, and the item points at its current one.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from medcot.licenses import SOURCE_LICENSES, UNKNOWN
from medcot.lifecycle import Status

OPTION_LABELS = ("A", "B", "C", "D", "E")


class Language(models.TextChoices):
    ZH = "zh", _("Chinese")
    EN = "en", _("English")


class ProjectLanguage(models.TextChoices):
    """A project's language: that of its items, or mixed when it holds both."""

    ZH = "zh", _("Chinese")
    EN = "en", _("English")
    MIXED = "mixed", _("Mixed (Chinese and English)")


class QuestionType(models.TextChoices):
    K = "K", _("K — best choice")
    S = "S", _("S — best choice for a case summary")


class CognitiveLevel(models.TextChoices):
    UNKNOWN = "", _("Unknown")
    RECALL = "recall", _("Recall")
    INTERPRETATION = "interpretation", _("Interpretation")
    PROBLEM_SOLVING = "problem_solving", _("Problem-solving")


class Difficulty(models.TextChoices):
    UNKNOWN = "", _("Unknown")
    EASY = "easy", _("Easy")
    MODERATE = "moderate", _("Moderate")
    HARD = "hard", _("Hard")


class ItemKind(models.TextChoices):
    SEED = "seed", _("Seed")
    SYNTHETIC = "synthetic", _("Synthetic")


class RevisionStatus(models.TextChoices):
    UNREVISED = "unrevised", _("Unrevised")
    MODIFIED = "modified", _("Modified")


class AuthorKind(models.TextChoices):
    IMPORT = "import", _("Imported")
    LLM = "llm", _("LLM")
    HUMAN = "human", _("Human")
    LLM_GUIDED = "llm_guided", _("LLM, guided by experts")


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete a row of an append-only history table."""


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")

    def delete(self):
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")


class AppendOnlyModel(models.Model):
    """History rows are written once. The guard covers the ORM paths people actually use
    (save on an existing row, queryset update/delete, instance delete)."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only")


class Project(models.Model):
    """A curation campaign with its pipeline settings (the paper's values as defaults)."""

    # The settings a person edits, in the order the form and the API show them.
    EDITABLE_FIELDS = (
        "name",
        "slug",
        "description",
        "language",
        "expansion_factor",
        "reanswer_attempts",
        "panel_size",
        "consensus_minimum",
        "first_pass_counts_for_consensus",
        "control_every",
        "control_threshold",
        "control_minimum",
        "double_review_percent",
    )

    name = models.CharField(_("name"), max_length=200, unique=True)
    slug = models.SlugField(_("slug"), max_length=80, unique=True)
    description = models.TextField(_("description"), blank=True)
    language = models.CharField(
        _("default language"),
        max_length=8,
        choices=ProjectLanguage.choices,
        default=ProjectLanguage.ZH,
    )
    expansion_factor = models.PositiveSmallIntegerField(
        _("items per seed family, seed included"), default=10
    )
    reanswer_attempts = models.PositiveSmallIntegerField(_("re-answer attempts"), default=5)
    panel_size = models.PositiveSmallIntegerField(_("experts per panel"), default=2)
    consensus_minimum = models.PositiveSmallIntegerField(
        _("experts needed for consensus"), default=2
    )
    first_pass_counts_for_consensus = models.BooleanField(
        _("an expert's first-pass pass counts toward consensus"), default=True
    )
    # A first-pass pass quicker than this needs the reviewer's explicit confirmation.
    min_pass_seconds = models.PositiveSmallIntegerField(
        _("minimum seconds on an item before a plain pass"), default=5
    )
    # Quality (review/quality): one queue item in `control_every` is a control item (0: none);
    # a reviewer whose accuracy on at least `control_minimum` controls falls below
    # `control_threshold` percent is reported to the admins.
    control_every = models.PositiveSmallIntegerField(
        _("one control item in every N queue items (0: none)"),
        default=20,
        validators=[MaxValueValidator(1000)],
    )
    control_threshold = models.PositiveSmallIntegerField(
        _("alert below this control accuracy (%)"), default=80, validators=[MaxValueValidator(100)]
    )
    control_minimum = models.PositiveSmallIntegerField(
        _("controls answered before an alert can fire"),
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
    )
    # The share of first-pass items (percent) that get a second, independent first-pass verdict.
    double_review_percent = models.PositiveSmallIntegerField(
        _("first-pass items reviewed twice (%)"), default=5, validators=[MaxValueValidator(100)]
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(expansion_factor__gte=1) & Q(expansion_factor__lte=100),
                name="project_expansion_factor_1_100",
            ),
            models.CheckConstraint(
                condition=Q(reanswer_attempts__gte=1) & Q(reanswer_attempts__lte=20),
                name="project_reanswer_attempts_1_20",
            ),
            models.CheckConstraint(condition=Q(panel_size__gte=1), name="project_panel_size_gte_1"),
            models.CheckConstraint(
                condition=Q(consensus_minimum__gte=1), name="project_consensus_minimum_gte_1"
            ),
            models.CheckConstraint(
                condition=Q(control_threshold__lte=100), name="project_control_threshold_le_100"
            ),
            models.CheckConstraint(
                condition=Q(double_review_percent__lte=100),
                name="project_double_review_percent_le_100",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ImportBatch(models.Model):
    """One import of one seed file. Records the file's digest so a re-import is recognised."""

    class State(models.TextChoices):
        PREVIEW = "preview", _("Awaiting confirmation")
        PENDING = "pending", _("Pending")
        RUNNING = "running", _("Running")
        DONE = "done", _("Imported")
        REJECTED = "rejected", _("Rejected")
        FAILED = "failed", _("Failed")

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    file_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField(default=0)
    format = models.CharField(max_length=32)
    options = models.JSONField(default=dict, blank=True)
    # The upload itself, kept until it is processed so a worker in another container can read it.
    content = models.BinaryField(null=True, blank=True, editable=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    records = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    unchanged_count = models.PositiveIntegerField(default=0)
    # The first ERROR_LIMIT problems; error_count counts them all.
    errors = models.JSONField(default=list, blank=True)
    error_count = models.PositiveIntegerField(default=0)
    # Notes that did not stop the import (repeated records kept once), capped the same way.
    warnings = models.JSONField(default=list, blank=True)
    warning_count = models.PositiveIntegerField(default=0)
    license = models.CharField(
        _("licence of the source"), max_length=32, choices=SOURCE_LICENSES, default=UNKNOWN
    )
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"{self.file_name} → {self.project}"

    @property
    def is_finished(self) -> bool:
        return self.state in {self.State.DONE, self.State.REJECTED, self.State.FAILED}


class Item(models.Model):
    """A question: a seed from an import or a synthetic sibling from expansion."""

    # No index of its own: the (project, external_id) unique index leads with the project.
    project = models.ForeignKey(
        Project, on_delete=models.PROTECT, related_name="items", db_index=False
    )
    kind = models.CharField(max_length=16, choices=ItemKind.choices, default=ItemKind.SEED)
    # The seed this item belongs to; a seed is its own family.
    family = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="family_members"
    )
    external_id = models.CharField(max_length=200)
    question_type = models.CharField(
        max_length=1, choices=QuestionType.choices, default=QuestionType.K
    )
    specialty = models.CharField(max_length=100, blank=True, db_index=True)
    cognitive_level = models.CharField(
        max_length=20, choices=CognitiveLevel.choices, blank=True, default=""
    )
    difficulty = models.CharField(max_length=10, choices=Difficulty.choices, blank=True, default="")
    language = models.CharField(max_length=8, choices=Language.choices)
    source = models.CharField(max_length=300, blank=True)
    # Case groups: questions sharing one case text (or one option list) carry the same group id
    # and their order in the case; the case text is kept with each so every screen shows it.
    group_id = models.CharField(max_length=200, blank=True, default="")
    group_order = models.PositiveSmallIntegerField(null=True, blank=True)
    case_text = models.TextField(_("case text"), blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.IMPORTED)
    status_changed_at = models.DateTimeField(auto_now_add=True)
    revision_status = models.CharField(
        max_length=16, choices=RevisionStatus.choices, default=RevisionStatus.UNREVISED
    )
    current_version = models.ForeignKey(
        "ItemVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    import_batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="items"
    )
    # Why the item is in `error` or was discarded, shown next to the retry action.
    status_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "external_id"], name="item_unique_external_id_per_project"
            ),
            models.CheckConstraint(condition=~Q(external_id=""), name="item_external_id_not_empty"),
            models.CheckConstraint(
                condition=Q(language__in=[c.value for c in Language]), name="item_language_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=[c.value for c in Status]), name="item_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(question_type__in=[c.value for c in QuestionType]),
                name="item_question_type_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["project", "status"], name="item_project_status"),
            models.Index(fields=["project", "specialty"], name="item_project_specialty"),
            models.Index(
                fields=["project", "group_id"],
                name="item_project_group",
                condition=~Q(group_id=""),
            ),
            # Queue claims walk straight to the first free item of a stage (specialty first).
            models.Index(fields=["status", "id"], name="review_item_queue"),
            models.Index(fields=["status", "specialty", "id"], name="review_item_queue_specialty"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.get_status_display()})"

    @property
    def family_key(self) -> int:
        return self.family_id or self.pk

    @property
    def case(self) -> dict | None:
        """The case group the item belongs to (a synthetic sibling: its seed's), or None."""
        source = self
        if not self.group_id and self.family_id and self.family_id != self.pk:
            source = self.family
        if not source.group_id:
            return None
        return {"group_id": source.group_id, "order": source.group_order, "text": source.case_text}


class ItemVersion(AppendOnlyModel):
    """One version of an item's content. Append-only: an edit is a new row.

    Options are columns, not a list, so the database itself refuses fewer than four options,
    more than five, and a key that names no option.
    """

    # No index of its own: the (item, number) unique index leads with the item.
    item = models.ForeignKey(
        Item, on_delete=models.PROTECT, related_name="versions", db_index=False
    )
    number = models.PositiveIntegerField()
    stem = models.TextField()
    option_a = models.TextField()
    option_b = models.TextField()
    option_c = models.TextField()
    option_d = models.TextField()
    option_e = models.TextField(blank=True, default="")
    answer = models.CharField(max_length=1)
    cot = models.TextField(_("chain of thought"), blank=True)
    reasoning = models.TextField(_("raw reasoning trace"), blank=True)
    author_kind = models.CharField(max_length=16, choices=AuthorKind.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True)
    # Which prompt and model produced an LLM-authored version (free text keeps the core
    # independent of the generation app).
    provenance = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item", "number"]
        constraints = [
            models.UniqueConstraint(fields=["item", "number"], name="version_unique_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="version_number_gte_1"),
            models.CheckConstraint(condition=~Q(stem=""), name="version_stem_not_empty"),
            models.CheckConstraint(
                condition=~Q(option_a="") & ~Q(option_b="") & ~Q(option_c="") & ~Q(option_d=""),
                name="version_at_least_four_options",
            ),
            models.CheckConstraint(
                condition=Q(answer__in=["A", "B", "C", "D"]) | (Q(answer="E") & ~Q(option_e="")),
                name="version_answer_is_an_option",
            ),
        ]

    def __str__(self) -> str:
        return f"v{self.number} of item {self.item_id}"

    @property
    def options(self) -> dict[str, str]:
        values = (self.option_a, self.option_b, self.option_c, self.option_d, self.option_e)
        return {label: text for label, text in zip(OPTION_LABELS, values, strict=True) if text}

    @property
    def answer_text(self) -> str:
        return self.options.get(self.answer, "")


class Event(AppendOnlyModel):
    """The audit log: every status change and every noteworthy action, with who and why."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="events")
    # Indexed by (item, created_at) below.
    item = models.ForeignKey(
        Item,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        db_index=False,
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=40)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    reason = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["item", "created_at"], name="event_item_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.from_status}→{self.to_status}"
