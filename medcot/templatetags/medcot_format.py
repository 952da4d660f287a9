"""Numbers, durations and languages as people read them, in the interface's language.

{% load medcot_format %}
{{ run.elapsed|duration }}            timedelta or seconds → "1 min 48 s" / "1分48秒"
{{ batch.duration_ms|duration:"ms" }} milliseconds → "850 ms" / "850毫秒"
{{ share|percent }}                   0.1234 → "12.3%"; {{ share|percent:0 }} → "12%"
<div lang="{{ item.language|html_lang }}">  "zh-hans" → "zh-Hans"
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from django import template
from django.utils.formats import number_format
from django.utils.translation import get_language, gettext_lazy, pgettext_lazy
from django.utils.translation import gettext as _

from medcot.i18n import bcp47, specialty_label

register = template.Library()


def _seconds(value, unit: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number / 1000 if unit == "ms" else number


@register.filter
def duration(value, unit: str = "s") -> str:
    """A duration the way people say it: never a raw timedelta such as 0:01:48.980052."""
    seconds = _seconds(value, unit)
    if seconds is None:
        return "—"
    sign = "−" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        text = _("%(n)s ms") % {"n": number_format(round(seconds * 1000), force_grouping=True)}
    elif seconds < 10:
        text = _("%(n)s s") % {"n": number_format(seconds, 1)}
    elif seconds < 60:
        text = _("%(n)s s") % {"n": round(seconds)}
    elif seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        text = (
            _("%(m)d min %(s)d s") % {"m": minutes, "s": rest}
            if rest
            else _("%(m)d min") % {"m": minutes}
        )
    elif seconds < 86400:
        hours, rest = divmod(round(seconds / 60), 60)
        text = (
            _("%(h)d h %(m)d min") % {"h": hours, "m": rest}
            if rest
            else _("%(h)d h") % {"h": hours}
        )
    else:
        days, rest = divmod(round(seconds / 3600), 24)
        text = _("%(d)d d %(h)d h") % {"d": days, "h": rest} if rest else _("%(d)d d") % {"d": days}
    return sign + text


@register.filter
def percent(value, digits: int = 1) -> str:
    """A share (0.1234) as a percentage in the interface's number format: "12.3%"."""
    if value is None or value == "":
        return "—"
    try:
        number = Decimal(str(value)) * 100
    except ArithmeticError:
        return "—"
    return _("%(n)s%%") % {"n": number_format(number, int(digits), force_grouping=True)}


@register.filter
def html_lang(value) -> str:
    """A language code as an HTML `lang` value; the interface's own when none is given."""
    return bcp47(str(value) if value else get_language())


# What the audit log's event kinds are called on screen. A kind missing here shows as its code.
EVENT_LABELS = {
    "transition": gettext_lazy("status change"),
    "project_created": gettext_lazy("project created"),
    "seeds_imported": gettext_lazy("seeds imported"),
    "first_pass_undone": gettext_lazy("first-pass review undone"),
    "panel_round_started": gettext_lazy("panel round started"),
    "panel_expert_added": gettext_lazy("expert added to the panel"),
    "panel_revision_requested": gettext_lazy("revision requested by the panel"),
    "panel_disagreement": gettext_lazy("panel disagreement"),
    "panel_regeneration_requested": gettext_lazy("guided regeneration requested"),
    "adjudicated": gettext_lazy("admin decision"),
    "llm_run_started": gettext_lazy("model run started"),
    "llm_run_paused": gettext_lazy("model run paused"),
    "llm_run_resumed": gettext_lazy("model run resumed"),
    "llm_run_cancelled": gettext_lazy("model run cancelled"),
    "regenerate_failed": gettext_lazy("guided regeneration failed"),
    "regenerated": gettext_lazy("guided regeneration arrived"),
    "expansion_short": gettext_lazy("expansion fell short"),
    "version_created": gettext_lazy("new version"),
    "near_duplicate_dropped": gettext_lazy("near-duplicate dropped"),
    "created": gettext_lazy("item created"),
    "specialty_set": gettext_lazy("specialty changed"),
}


@register.filter
def event_label(kind) -> str:
    """An event kind in words; an unknown kind reads as its code with spaces."""
    label = EVENT_LABELS.get(kind)
    return str(label) if label is not None else str(kind or "").replace("_", " ")


@register.filter
def status_label(value) -> str:
    """An item status code ("first_review") as its name in the interface language."""
    from medcot.lifecycle import Status

    try:
        return str(Status(value).label)
    except ValueError:
        return str(value or "")


@register.filter
def language_label(value) -> str:
    """A content language code ("zh", "en", "mixed") as its name in the interface language."""
    from medcot.models import ProjectLanguage

    try:
        return str(ProjectLanguage(value).label)
    except ValueError:
        return str(value or "")


@register.filter(name="specialty_label")
def specialty_label_filter(value) -> str:
    return specialty_label(value)


# Prompt variants (generation/prompts/<language>/<task>.<variant>.txt) as the interface names them.
VARIANT_LABELS = {
    "default": pgettext_lazy("prompt variant", "default"),
    "strict": pgettext_lazy("prompt variant", "strict"),
    "direct": pgettext_lazy("prompt variant", "direct"),
    "elimination": pgettext_lazy("prompt variant", "elimination"),
    "stepwise": pgettext_lazy("prompt variant", "stepwise"),
    "exam": pgettext_lazy("prompt variant", "exam"),
}


@register.filter
def variant_label(value) -> str:
    return str(VARIANT_LABELS.get(value, value or ""))


@register.filter
def specialty_labels(values) -> str:
    """A list of specialties, each in the interface language, joined as the language lists."""
    return str(_(", ")).join(specialty_label(v) for v in values or [])


# System text stored with values in it (written by medcot/imports and generation): the pattern
# and the message it is shown as.
STORED_PATTERNS = (
    (
        re.compile(r"^imported from (?P<file>.+) line (?P<line>\d+)$"),
        gettext_lazy("imported from %(file)s line %(line)s"),
    ),
    (re.compile(r"^imported from (?P<file>.+)$"), gettext_lazy("imported from %(file)s")),
    (
        re.compile(r"^(?P<n>\d+) re-answer attempts failed$"),
        gettext_lazy("%(n)s re-answer attempts failed"),
    ),
)


@register.filter
def stored_text(value) -> str:
    """Text the system stored in English (an event's or version's reason, marked with
    gettext_noop where it is written) in the interface language; other text as written."""
    if not value:
        return ""
    text = str(value)
    for pattern, message in STORED_PATTERNS:
        match = pattern.match(text)
        if match:
            return str(message) % match.groupdict()
    return _(text)


@register.filter
def import_problem(value) -> str:
    """An import problem (a stored `{"code", "params", "message"}`, or a message) in the
    interface's language; rows stored before codes read as stored."""
    from medcot.imports.messages import localize

    return localize(value)


@register.filter
def license_label(code) -> str:
    """A licence code ("cc-by-nc-4.0") as people name it ("CC BY-NC 4.0")."""
    from medcot import licenses

    return licenses.label(code)


@register.filter
def release_filter_values(values, key) -> str:
    """The values of a release filter, each as the interface names it."""
    from medcot.models import QuestionType

    if key == "specialties":
        return specialty_labels(values)
    if key == "languages":
        names = [language_label(v) for v in values or []]
    elif key == "question_types":
        names = [
            str(QuestionType(v).label) if v in QuestionType.values else v for v in values or []
        ]
    else:
        names = [str(v) for v in values or []]
    return str(_(", ")).join(names)
