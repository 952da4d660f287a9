"""Models of review/quality. Registered through the review app (review/models.py imports them),
so their migrations live in review/migrations."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class ControlItem(models.Model):
    """An item whose verdict is known, served unseen in a queue to measure the people answering it.

    The served item is a copy (`item`) in the same project and in the queue's status, so the page
    and the API show it exactly like any other; it never moves on, and answers to it are kept
    as `ControlAnswer` rows, never as first-pass reviews or consensus votes."""

    class Source(models.TextChoices):
        ITEM = "item", _("A reviewed item")
        FILE = "file", _("A control file")

    project = models.ForeignKey("medcot.Project", on_delete=models.CASCADE, related_name="+")
    item = models.OneToOneField("medcot.Item", on_delete=models.PROTECT, related_name="control")
    source_item = models.ForeignKey(
        "medcot.Item", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.ITEM)
    stage = models.CharField(max_length=20)
    # The known verdict: the item is valid as it stands (pass / agree), or it is not.
    expected_valid = models.BooleanField(_("valid"))
    expected_answer = models.CharField(_("correct answer"), max_length=1)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(stage__in=["first_review", "consensus"]), name="control_stage_valid"
            ),
            models.CheckConstraint(
                condition=Q(expected_answer__in=["A", "B", "C", "D", "E"]),
                name="control_answer_valid",
            ),
        ]
        indexes = [models.Index(fields=["project", "stage", "active"], name="control_queue")]

    def __str__(self) -> str:
        return f"control {self.pk} (item {self.item_id}, {self.stage})"


class ControlAnswer(models.Model):
    """One person's answer to one control item: history, written once."""

    control = models.ForeignKey(ControlItem, on_delete=models.PROTECT, related_name="answers")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="control_answers"
    )
    stage = models.CharField(max_length=20)
    given_valid = models.BooleanField()
    answer = models.CharField(max_length=1, blank=True)
    correct = models.BooleanField()
    seconds_on_item = models.PositiveIntegerField(default=0)
    # The submission as the reviewer made it (criteria, outcome, reason, comment).
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["control", "reviewer"], name="control_one_answer_per_reviewer"
            )
        ]

    def __str__(self) -> str:
        return f"{self.reviewer_id} on control {self.control_id}: {self.correct}"


class VerdictPosterior(models.Model):
    """The aggregated verdict of an item's current version: P(valid) from Dawid–Skene over
    every human verdict on that version, and how many verdicts there were. Rewritten by each
    refit (a derived figure, not history)."""

    item = models.OneToOneField("medcot.Item", on_delete=models.CASCADE, related_name="posterior")
    version = models.ForeignKey("medcot.ItemVersion", on_delete=models.CASCADE, related_name="+")
    p_valid = models.FloatField()
    n_verdicts = models.PositiveSmallIntegerField()
    fitted_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(p_valid__gte=0) & Q(p_valid__lte=1), name="posterior_is_probability"
            )
        ]

    def __str__(self) -> str:
        return f"item {self.item_id}: P(valid) = {self.p_valid:.3f}"


class ReviewerEstimate(models.Model):
    """A person's estimated sensitivity and specificity in a project, from the last refit."""

    project = models.ForeignKey("medcot.Project", on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    sensitivity = models.FloatField()
    specificity = models.FloatField()
    n_labels = models.PositiveIntegerField()
    fitted_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "reviewer"], name="estimate_one_per_reviewer"
            )
        ]

    def __str__(self) -> str:
        return f"{self.reviewer_id}: sens {self.sensitivity:.2f} spec {self.specificity:.2f}"


class QualityFit(models.Model):
    """One refit of a project's aggregation: what it read, how long it took."""

    project = models.ForeignKey("medcot.Project", on_delete=models.CASCADE, related_name="+")
    # The number of verdict rows read; a refit is skipped while it has not changed.
    watermark = models.CharField(max_length=100)
    n_items = models.PositiveIntegerField()
    n_labels = models.PositiveIntegerField()
    n_workers = models.PositiveIntegerField()
    iterations = models.PositiveSmallIntegerField()
    seconds = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"fit of project {self.project_id} at {self.created_at}"


class ReliabilityAlert(models.Model):
    """A reviewer's control accuracy fell below the project's threshold. Open until an admin
    acts on it (a second opinion) or dismisses it."""

    project = models.ForeignKey("medcot.Project", on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    accuracy = models.FloatField()
    n_controls = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    # When an admin asked for a second opinion: from then on, while the alert is open, every
    # first-pass verdict of this reviewer is reviewed twice.
    second_opinion_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "reviewer"],
                condition=Q(closed_at__isnull=True),
                name="alert_one_open_per_reviewer",
            )
        ]

    def __str__(self) -> str:
        return f"alert on {self.reviewer_id} ({self.accuracy:.2f} over {self.n_controls})"


class DoubleReview(models.Model):
    """A first-pass item drawn for a second, independent first-pass verdict. The first verdict
    is kept and the item stays in the queue until someone else gives the second; then the
    two are compared. Agreement lets the second verdict take effect; a disagreement sends the
    item on to the experts (re-answering, then consensus) instead of discarding it."""

    class State(models.TextChoices):
        WAITING = "waiting", _("Waiting for a second verdict")
        AGREED = "agreed", _("Both verdicts agree")
        DISAGREED = "disagreed", _("Verdicts disagree: sent to the experts")

    class Why(models.TextChoices):
        SAMPLE = "sample", _("Random sample")
        SECOND_OPINION = "second_opinion", _("Second opinion asked by an admin")
        JUDGE = "judge", _("The machine judge scored medical correctness 0")

    item = models.OneToOneField("medcot.Item", on_delete=models.CASCADE, related_name="double")
    version = models.ForeignKey("medcot.ItemVersion", on_delete=models.PROTECT, related_name="+")
    first = models.ForeignKey("review.FirstPassReview", on_delete=models.PROTECT, related_name="+")
    second = models.ForeignKey(
        "review.FirstPassReview", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    why = models.CharField(max_length=16, choices=Why.choices, default=Why.SAMPLE)
    state = models.CharField(max_length=12, choices=State.choices, default=State.WAITING)
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"double review of item {self.item_id} ({self.state})"
