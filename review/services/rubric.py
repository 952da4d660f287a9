"""The written rubric standard. An edit appends a new version; old scores keep pointing at the
version they were given under."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils.translation import gettext as _

from review.models import RubricDimension, RubricGuide
from review.roles import ADMIN, require_role
from review.services.common import ReviewError, actor_or_none


def rubric_guide_current() -> RubricGuide | None:
    return RubricGuide.objects.order_by("-version").first()


def rubric_guide_create(
    *, actor, introduction: str, levels: dict[str, dict[str, str]], note: str
) -> RubricGuide:
    require_role(actor, ADMIN)
    clean: dict[str, dict[str, str]] = {}
    for dimension in RubricDimension:
        given = levels.get(dimension.value) or {}
        clean[dimension.value] = {}
        for level in ("0", "1", "2"):
            text = (given.get(level) or "").strip()
            if not text:
                raise ReviewError(
                    _("Describe level %(level)s of %(dimension)s.")
                    % {"level": level, "dimension": dimension.label}
                )
            clean[dimension.value][level] = text
    note = note.strip()
    if not note:
        raise ReviewError(_("Say what changed in this version."))
    with transaction.atomic():
        # The unique version number makes a concurrent edit fail instead of overwriting.
        latest = RubricGuide.objects.aggregate(n=Max("version"))["n"] or 0
        return RubricGuide.objects.create(
            version=latest + 1,
            introduction=introduction.strip(),
            levels=clean,
            note=note[:300],
            created_by=actor_or_none(actor),
        )
