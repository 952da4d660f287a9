"""The written rubric standard, one versioned guide per interface language (English and
Chinese ship as v1). An edit appends a new version of that language's guide; old scores keep
pointing at the version they were given under. A language without a guide reads the English one."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from medcot.roles import ADMIN, require_role
from medcot.rubric import RubricText
from review.models import RubricDimension, RubricGuide
from review.services.common import ReviewError, actor_or_none

FALLBACK_LANGUAGE = "en"


def rubric_guide_current(language: str | None = None) -> RubricGuide | None:
    """The newest guide in `language` (the active interface language by default), else the
    newest English one."""
    language = language or get_language() or FALLBACK_LANGUAGE
    guides = RubricGuide.objects.order_by("-version")
    return (
        guides.filter(language=language).first()
        or guides.filter(language=FALLBACK_LANGUAGE).first()
        or guides.first()
    )


def rubric_text_current(language: str) -> RubricText | None:
    """The current guide as the core's plain `RubricText`, for readers outside this app."""
    guide = rubric_guide_current(language)
    if guide is None:
        return None
    return RubricText(
        introduction=guide.introduction,
        levels=guide.levels,
        language=guide.language,
        version=guide.version,
    )


def rubric_guide_create(
    *,
    actor,
    introduction: str,
    levels: dict[str, dict[str, str]],
    note: str,
    language: str = FALLBACK_LANGUAGE,
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
        latest = RubricGuide.objects.filter(language=language).aggregate(n=Max("version"))["n"]
        return RubricGuide.objects.create(
            language=language,
            version=(latest or 0) + 1,
            introduction=introduction.strip(),
            levels=clean,
            note=note[:300],
            created_by=actor_or_none(actor),
        )
