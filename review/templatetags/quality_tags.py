"""Template hooks of review/quality: an item's posterior, the admins' alert banner, percents."""

from django import template

from review.quality.models import ReliabilityAlert, VerdictPosterior

register = template.Library()


@register.inclusion_tag("review/quality/_posterior.html")
def item_posterior(item):
    return {"item": item, "posterior": VerdictPosterior.objects.filter(item=item).first()}


@register.inclusion_tag("review/quality/_alerts.html")
def quality_alerts(project=None):
    alerts = ReliabilityAlert.objects.filter(closed_at__isnull=True).select_related(
        "reviewer", "project"
    )
    if project is not None:
        alerts = alerts.filter(project=project)
    return {"alerts": alerts[:10]}


@register.filter
def percent(value) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.0f} %"
