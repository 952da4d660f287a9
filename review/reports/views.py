"""The project dashboard, for admins: the funnel, distributions, agreement, people and LLM
usage. Thin: one selector, its figures, render; htmx polls get the live fragment."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from medcot.permissions import project_get_for_admin
from review.reports import figures, selectors


@login_required
@require_GET
def dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for_admin(user=request.user, slug=slug)
    data = selectors.project_dashboard(project=project)
    context = {
        "project": project,
        "data": data,
        "charts": figures.dashboard_charts(data),
        "agreement_rows": figures.agreement_rows(data["agreement"]),
        "poll_url": reverse("project_dashboard", kwargs={"slug": slug}),
    }
    if request.htmx:
        return render(request, "reports/_dashboard_live.html", context)
    return render(request, "reports/dashboard.html", context)
