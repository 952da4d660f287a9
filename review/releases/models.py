"""Releases: immutable, versioned snapshots of a project's approved items.

A release freezes its item set (one `ReleaseItem` per item, pointing at the exact content
version released) before any file is written, so what the files contain is decided once. After
the build, nothing about a release changes: the services only move `state` forward with
conditional updates, and `ReleaseItem` rows are append-only.
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from medcot.models import AppendOnlyModel

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"


class Release(models.Model):
    class State(models.TextChoices):
        QUEUED = "queued", _("Queued")
        BUILDING = "building", _("Building")
        BUILT = "built", _("Built")
        FAILED = "failed", _("Failed")

    project = models.ForeignKey("medcot.Project", on_delete=models.PROTECT, related_name="releases")
    version = models.CharField(
        _("version"),
        max_length=40,
        validators=[
            RegexValidator(
                VERSION_PATTERN,
                _("Use letters, digits, dots, dashes and underscores, e.g. v1.0 or 2026-11."),
            )
        ],
    )
    # {"specialties": [...], "languages": [...], "question_types": [...]}; empty = all.
    filters = models.JSONField(default=dict, blank=True)
    license = models.CharField(_("licence"), max_length=64, default="cc-by-nc-4.0")
    notes = models.TextField(_("notes for the dataset card"), blank=True)
    # The language the dataset card's headings (and charts) are written in, chosen at build and
    # kept, so a rebuild writes the same bytes whoever runs it.
    card_language = models.CharField(
        _("language of the dataset card"),
        max_length=10,
        choices=[("en", _("English")), ("zh-hans", _("Chinese"))],
        default="en",
    )
    # The release the diff file in the zip compares against (the project's previous build).
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    state = models.CharField(max_length=12, choices=State.choices, default=State.QUEUED)
    frozen = models.BooleanField(default=False)
    item_count = models.PositiveIntegerField(default=0)
    # Approved items left out because they lack the consensus the project requires.
    excluded_without_consensus = models.PositiveIntegerField(default=0)
    progress_done = models.PositiveIntegerField(default=0)
    # Relative to MEDIA_ROOT, e.g. "releases/<project-slug>/<version>".
    directory = models.CharField(max_length=300, blank=True)
    # {file name: {"sha256": ..., "bytes": ...}} for every file, the zip included.
    files = models.JSONField(default=dict, blank=True)
    zip_sha256 = models.CharField(max_length=64, blank=True)
    # Funnel, distributions and agreement snapshotted at build time (what the card shows).
    stats = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    build_seconds = models.FloatField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    built_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="release_unique_version"),
            models.CheckConstraint(
                condition=Q(state__in=["queued", "building", "built", "failed"]),
                name="release_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(version__regex=VERSION_PATTERN), name="release_version_format"
            ),
            models.CheckConstraint(
                condition=~Q(state="built") | (Q(frozen=True) & ~Q(zip_sha256="")),
                name="release_built_has_files",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project} {self.version}"

    @property
    def is_finished(self) -> bool:
        return self.state in {self.State.BUILT, self.State.FAILED}

    @property
    def zip_name(self) -> str:
        return f"{self.project.slug}-{self.version}.zip"

    @property
    def progress_percent(self) -> int:
        if self.state == self.State.BUILT:
            return 100
        if not self.item_count:
            return 0
        return min(99, int(100 * self.progress_done / self.item_count))


class ReleaseItem(AppendOnlyModel):
    """One item of a release and the content version released. Written once, at freezing."""

    # No index of its own: the unique (release, item) index serves every lookup by release and
    # keeps the frozen list in item order, which the build pages through.
    release = models.ForeignKey(
        Release, on_delete=models.CASCADE, related_name="release_items", db_index=False
    )
    item = models.ForeignKey("medcot.Item", on_delete=models.PROTECT, related_name="+")
    version = models.ForeignKey("medcot.ItemVersion", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["release", "item"]
        constraints = [
            models.UniqueConstraint(fields=["release", "item"], name="release_item_once"),
        ]
