from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Profile(models.Model):
    """What MedCoT knows of a person beyond their login: specialties, and a pseudonym used
    wherever their work is published (releases never carry names or emails)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="medcot_profile"
    )
    display_name = models.CharField(_("display name"), max_length=150, blank=True)
    specialties = models.JSONField(_("specialties"), default=list, blank=True)
    pseudonym = models.CharField(max_length=32, unique=True)
    # The interface language the person chose in the header's switcher (a code of
    # settings.LANGUAGES). Empty: the browser's Accept-Language decides.
    language = models.CharField(_("interface language"), max_length=16, blank=True)

    def __str__(self) -> str:
        return self.display_name or self.user.get_username()


# --------------------------------------------------------------------------------------------
# The review workflow: leases on queue items, first-pass reviews, expert panels with rubric
# scores, consensus votes and admin adjudications. Reviews, scores, votes and decisions are
# history: they are written once and never updated (an undo marks a first-pass review undone
# while it is still held, before it has taken effect).
# --------------------------------------------------------------------------------------------


class Stage(models.TextChoices):
    """The human stages that hand out items through a queue."""

    FIRST_REVIEW = "first_review", _("First-pass review")
    CONSENSUS = "consensus", _("Consensus")


class Lease(models.Model):
    """Who is working on which queue item right now. One holder per (item, stage); a lease past
    `expires_at` no longer counts, and the next claim takes the row over."""

    item = models.ForeignKey("medcot.Item", on_delete=models.CASCADE, related_name="leases")
    stage = models.CharField(max_length=20, choices=Stage.choices)
    holder = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="review_leases"
    )
    claimed_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "stage"], name="lease_one_holder_per_stage"),
            models.CheckConstraint(
                condition=Q(stage__in=[c.value for c in Stage]), name="lease_stage_valid"
            ),
        ]
        indexes = [models.Index(fields=["holder", "stage", "expires_at"], name="lease_holder")]

    def __str__(self) -> str:
        return f"{self.holder_id} holds {self.item_id} ({self.stage})"


class FirstPassOutcome(models.TextChoices):
    PASS = "pass", _("Pass")
    FIXED = "fixed", _("Fixed")
    DISCARDED = "discarded", _("Discarded")


class FirstPassState(models.TextChoices):
    # A submission is held for the undo window and takes effect afterwards (like "undo send").
    HELD = "held", _("Held for undo")
    APPLIED = "applied", _("Applied")
    UNDONE = "undone", _("Undone")


class FirstPassReview(models.Model):
    """One reviewer's binary verdict on one item version. The fix, when there is one, is kept
    here until the submission takes effect, then written as a new content version."""

    item = models.ForeignKey(
        "medcot.Item", on_delete=models.PROTECT, related_name="first_pass_reviews"
    )
    version = models.ForeignKey("medcot.ItemVersion", on_delete=models.PROTECT, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="first_pass_reviews"
    )
    relevance = models.BooleanField()
    correctness = models.BooleanField()
    sufficiency = models.BooleanField()
    outcome = models.CharField(max_length=12, choices=FirstPassOutcome.choices)
    reason = models.TextField(blank=True)
    comment = models.TextField(blank=True)
    fix = models.JSONField(default=dict, blank=True)
    fix_version = models.ForeignKey(
        "medcot.ItemVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    seconds_on_item = models.PositiveIntegerField(default=0)
    # What the reviewer explicitly confirmed to pass: "mismatch" (the CoT concludes on another
    # option than the key) and "fast" (quicker than the project's minimum time on an item).
    confirmations = models.JSONField(default=list, blank=True)
    # The option the chain of thought concluded on when it was reviewed ("" when none found).
    cot_concluded = models.CharField(max_length=1, blank=True)
    state = models.CharField(
        max_length=10, choices=FirstPassState.choices, default=FirstPassState.HELD
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    effective_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=[c.value for c in FirstPassOutcome]),
                name="first_pass_outcome_valid",
            ),
            # A pass needs all three criteria; a fix or a discard needs a reason.
            models.CheckConstraint(
                condition=~Q(outcome="pass")
                | (Q(relevance=True) & Q(correctness=True) & Q(sufficiency=True)),
                name="first_pass_pass_needs_all_criteria",
            ),
            models.CheckConstraint(
                condition=Q(outcome="pass") | ~Q(reason=""), name="first_pass_zero_needs_reason"
            ),
            # One live verdict per reviewer and item: an undone one does not count.
            models.UniqueConstraint(
                fields=["item", "reviewer"],
                condition=~Q(state="undone"),
                name="first_pass_one_live_review_per_reviewer",
            ),
        ]
        indexes = [models.Index(fields=["state", "effective_at"], name="first_pass_due")]

    def __str__(self) -> str:
        return f"first pass of item {self.item_id}: {self.outcome}"

    @property
    def score(self) -> int:
        return int(self.relevance and self.correctness and self.sufficiency)


class RubricDimension(models.TextChoices):
    MEDICAL_CORRECTNESS = "medical_correctness", _("Medical correctness")
    REASONING_STRUCTURE = "reasoning_structure", _("Reasoning structure")
    INFORMATION_SUFFICIENCY = "information_sufficiency", _("Information sufficiency")
    TERMINOLOGY_CLARITY = "terminology_clarity", _("Terminology clarity")
    CLINICAL_UTILITY = "clinical_utility", _("Clinical utility")


class RubricGuide(models.Model):
    """The written scoring standard. Versioned per interface language: an edit is a new row; the
    newest one in the reader's language is shown (English when that language has none).

    `levels` maps each dimension to {"0": text, "1": text, "2": text}."""

    language = models.CharField(_("language"), max_length=16, default="en")
    version = models.PositiveIntegerField()
    introduction = models.TextField(blank=True)
    levels = models.JSONField()
    note = models.CharField(_("what changed"), max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.CheckConstraint(condition=Q(version__gte=1), name="rubric_guide_version_gte_1"),
            models.UniqueConstraint(
                fields=["language", "version"], name="rubric_guide_one_version_per_language"
            ),
        ]

    def __str__(self) -> str:
        return f"rubric guide {self.language} v{self.version}"


class PanelState(models.TextChoices):
    SCORING = "scoring", _("Scoring")
    REVISING = "revising", _("Waiting for a revision")
    REGENERATING = "regenerating", _("Waiting for a guided regeneration")
    ADJUDICATION = "adjudication", _("Waiting for an admin decision")
    CLOSED = "closed", _("Closed")


class Panel(models.Model):
    """The experts assigned to one escalated item. Rounds restart after each revision."""

    item = models.OneToOneField("medcot.Item", on_delete=models.PROTECT, related_name="panel")
    round = models.PositiveSmallIntegerField(default=1)
    state = models.CharField(max_length=16, choices=PanelState.choices, default=PanelState.SCORING)
    # The version a round scores; a guided regeneration is awaited until a newer one exists.
    round_version = models.ForeignKey(
        "medcot.ItemVersion", on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(round__gte=1), name="panel_round_gte_1"),
            models.CheckConstraint(
                condition=Q(state__in=[c.value for c in PanelState]), name="panel_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"panel for item {self.item_id} (round {self.round})"


class PanelMembership(models.Model):
    class Why(models.TextChoices):
        ASSIGNED = "assigned", _("Assigned by an admin")
        AUTO = "auto", _("Auto-assigned")
        ADJUDICATION = "adjudication", _("Added to resolve a disagreement")

    panel = models.ForeignKey(Panel, on_delete=models.CASCADE, related_name="memberships")
    expert = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="panel_memberships"
    )
    why = models.CharField(max_length=16, choices=Why.choices, default=Why.ASSIGNED)
    # The round the expert joined in; they score that round and every later one.
    joined_round = models.PositiveSmallIntegerField(default=1)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["panel", "expert"], name="panel_member_once")
        ]

    def __str__(self) -> str:
        return f"expert {self.expert_id} on panel {self.panel_id}"


class Decision(models.TextChoices):
    ACCEPT = "accept", _("Accept")
    REVISE = "revise", _("Revise")
    DISCARD = "discard", _("Discard")


class RubricScore(models.Model):
    item = models.ForeignKey("medcot.Item", on_delete=models.PROTECT, related_name="rubric_scores")
    version = models.ForeignKey("medcot.ItemVersion", on_delete=models.PROTECT, related_name="+")
    expert = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="rubric_scores"
    )
    round = models.PositiveSmallIntegerField()
    dimension = models.CharField(max_length=32, choices=RubricDimension.choices)
    score = models.PositiveSmallIntegerField()
    guide = models.ForeignKey(
        RubricGuide, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round", "expert_id", "dimension"]
        constraints = [
            models.CheckConstraint(
                condition=Q(score__gte=0) & Q(score__lte=2), name="rubric_score_0_2"
            ),
            models.CheckConstraint(
                condition=Q(dimension__in=[c.value for c in RubricDimension]),
                name="rubric_dimension_valid",
            ),
            models.CheckConstraint(condition=Q(round__gte=1), name="rubric_round_gte_1"),
            models.UniqueConstraint(
                fields=["item", "expert", "dimension", "round"], name="rubric_one_score_per_round"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dimension}={self.score} (item {self.item_id}, round {self.round})"


class PanelDecision(models.Model):
    """An expert's verdict for one scoring round, submitted with their five scores."""

    panel = models.ForeignKey(Panel, on_delete=models.PROTECT, related_name="decisions")
    item = models.ForeignKey("medcot.Item", on_delete=models.PROTECT, related_name="+")
    version = models.ForeignKey("medcot.ItemVersion", on_delete=models.PROTECT, related_name="+")
    expert = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    round = models.PositiveSmallIntegerField()
    decision = models.CharField(max_length=10, choices=Decision.choices)
    answer = models.CharField(_("answer held correct"), max_length=1)
    comment = models.TextField(blank=True)
    first_wrong_step = models.PositiveSmallIntegerField(null=True, blank=True)
    seconds_on_item = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round", "created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["panel", "expert", "round"], name="panel_decision_once_per_round"
            ),
            models.CheckConstraint(
                condition=Q(decision__in=[c.value for c in Decision]),
                name="panel_decision_valid",
            ),
            models.CheckConstraint(
                condition=Q(answer__in=["A", "B", "C", "D", "E"]), name="panel_answer_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.decision} by {self.expert_id} (item {self.item_id}, round {self.round})"


class ConsensusVote(models.Model):
    """An expert's agreement (or not) with an item version's key and phrasing. Panel accepts and,
    when the project allows it, an expert's first-pass pass are recorded as votes too."""

    class Source(models.TextChoices):
        QUEUE = "queue", _("Consensus queue")
        PANEL = "panel", _("Panel decision")
        FIRST_PASS = "first_pass", _("Expert first-pass pass")

    item = models.ForeignKey(
        "medcot.Item", on_delete=models.PROTECT, related_name="consensus_votes"
    )
    version = models.ForeignKey("medcot.ItemVersion", on_delete=models.PROTECT, related_name="+")
    expert = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="consensus_votes"
    )
    answer = models.CharField(max_length=1)
    approve_phrasing = models.BooleanField()
    comment = models.TextField(blank=True)
    source = models.CharField(max_length=12, choices=Source.choices, default=Source.QUEUE)
    # "mismatch" when the expert confirmed a key the chain of thought does not conclude on.
    confirmations = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "version", "expert"], name="consensus_one_vote_per_version"
            ),
            models.CheckConstraint(
                condition=Q(answer__in=["A", "B", "C", "D", "E"]), name="consensus_answer_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"vote {self.answer} by {self.expert_id} on item {self.item_id}"


class Adjudication(models.Model):
    """An admin's decision on a deadlocked item, always with a reason."""

    class Outcome(models.TextChoices):
        ACCEPT = "accept", _("Accept the majority's key")
        DISCARD = "discard", _("Discard")
        NEW_ROUND = "new_round", _("Send back to the panel for a new round")
        ADD_EXPERT = "add_expert", _("Add an expert")

    item = models.ForeignKey("medcot.Item", on_delete=models.PROTECT, related_name="adjudications")
    admin = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    reason = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="adjudication_needs_reason")
        ]

    def __str__(self) -> str:
        return f"{self.outcome} on item {self.item_id}"


# --------------------------------------------------------------------------------------------
# The machine judge, from the human side: how far a project lets it steer the queues, and what
# experts say of its rationales once they have given their own verdict (review.judge).
# --------------------------------------------------------------------------------------------


class JudgeSettings(models.Model):
    """Per project: when a judge dimension counts as trusted, and which uses are switched on.
    Every use is off by default and applies only while its dimensions are trusted."""

    project = models.OneToOneField(
        "medcot.Project", on_delete=models.CASCADE, related_name="judge_settings"
    )
    kappa_threshold = models.FloatField(
        _("lower bound of weighted κ needed"),
        default=0.6,
        help_text=_(
            "A dimension is trusted when the lower end of the 95-per-cent interval of its "
            "quadratic weighted κ against the experts reaches this value."
        ),
    )
    min_items = models.PositiveIntegerField(
        _("items needed"),
        default=30,
        help_text=_("…on at least this many items scored by both the judge and the experts."),
    )
    order_queues = models.BooleanField(
        _("order first-pass and panel queues by judge risk, worst first"), default=False
    )
    second_review_on_zero = models.BooleanField(
        _("require a second first-pass reviewer when the judge scores medical correctness 0"),
        default=False,
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kappa_threshold__gte=-1) & Q(kappa_threshold__lte=1),
                name="judge_settings_threshold_range",
            ),
            models.CheckConstraint(condition=Q(min_items__gte=2), name="judge_settings_min_2"),
        ]

    def __str__(self) -> str:
        return f"judge settings of project {self.project_id}"


class JudgeFeedback(models.Model):
    """An expert's word on the judge's rationale for one item, given after their own verdict:
    helpful, or wrong. One per (judge score, expert, dimension); the latest word is a new row
    only when the dimension differs."""

    class Verdict(models.TextChoices):
        HELPFUL = "helpful", _("Helpful")
        WRONG = "wrong", _("Wrong")

    judge_score = models.ForeignKey(
        "generation.JudgeScore", on_delete=models.PROTECT, related_name="feedback"
    )
    expert = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    dimension = models.CharField(max_length=32, choices=RubricDimension.choices)
    verdict = models.CharField(max_length=8, choices=Verdict.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["judge_score", "expert", "dimension"], name="judge_feedback_once"
            ),
            models.CheckConstraint(
                condition=Q(verdict__in=["helpful", "wrong"]), name="judge_feedback_verdict_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.verdict} on judge score {self.judge_score_id}"


# Quality models (controls, posteriors, reviewer estimates) live in review/quality/ and belong
# to this app.
from review.quality.models import (  # noqa: E402, F401
    ControlAnswer,
    ControlItem,
    DoubleReview,
    QualityFit,
    ReliabilityAlert,
    ReviewerEstimate,
    VerdictPosterior,
)
