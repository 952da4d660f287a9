from django import template
from django.utils.formats import number_format

register = template.Library()


@register.filter
def percent(value) -> str:
    """A share (0–1) as a percentage with one decimal, in the active locale; "—" when the share
    is undefined."""
    if value is None or value == "":
        return "—"
    return f"{number_format(float(value) * 100, 1)} %"


@register.filter
def filesize_exact(value) -> str:
    return number_format(int(value), 0, force_grouping=True) if value is not None else "—"
