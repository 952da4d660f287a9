"""Admin pages of review/quality: reviewer reliability, control items, alerts."""

from __future__ import annotations

import csv

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from medcot.models import Item, Project
from medcot.roles import ADMIN, require_role
from review.quality import selectors
from review.quality.controls import (
    control_create_from_item,
    control_file_import,
    recent_verdicts,
    reliability_alert_close,
    second_opinion_request,
)
from review.quality.forms import ControlFileForm, ControlFromItemForm
from review.quality.models import ControlItem, ReliabilityAlert
from review.services.common import ReviewError

EXPORT_COLUMNS = [
    "pseudonym",
    "controls",
    "controls_correct",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "sensitivity",
    "specificity",
    "agreement",
    "agreement_pairs",
    "median_seconds",
    "fast_share",
    "per_day",
    "verdicts",
]


def _project(request: HttpRequest, slug: str) -> Project:
    require_role(request.user, ADMIN)
    return get_object_or_404(Project, slug=slug)


def _figure(value):
    return "" if value is None else (round(value, 4) if isinstance(value, float) else value)


@login_required
@require_GET
def reliability(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(request, slug)
    sort = request.GET.get("sort", "name")
    descending = request.GET.get("dir") == "desc"
    rows = selectors.reliability_rows(project=project, sort=sort, descending=descending)
    if request.GET.get("export") == "csv":
        # Exports name people by pseudonym only, as releases do.
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{project.slug}-reliability.csv"'
        writer = csv.writer(response)
        writer.writerow(EXPORT_COLUMNS)
        for row in rows:
            writer.writerow([_figure(row[c]) for c in EXPORT_COLUMNS])
        return response
    alerts = list(selectors.alerts_open(project=project))
    for alert in alerts:
        alert.recent = list(
            recent_verdicts(project_id=project.pk, reviewer_id=alert.reviewer_id)[:20]
        )
    columns = [
        ("name", _("Person")),
        ("controls", _("Controls")),
        ("accuracy", _("Control accuracy (95 % CI)")),
        ("sensitivity", _("Sensitivity")),
        ("specificity", _("Specificity")),
        ("agreement", _("Agreement with peers")),
        ("median_seconds", _("Median seconds per item")),
        ("fast_share", _("Passes under the minimum")),
        ("per_day", _("Verdicts per day")),
        ("verdicts", _("Verdicts")),
    ]
    context = {
        "project": project,
        "rows": rows,
        "sort": sort,
        "descending": descending,
        "columns": columns,
        "alerts": alerts,
        "summary": selectors.quality_summary(project=project),
    }
    return render(request, "review/quality/reliability.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def controls(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(request, slug)
    item_form = ControlFromItemForm(prefix="item")
    file_form = ControlFileForm(prefix="file")
    error = ""
    if request.method == "POST":
        try:
            if "item-item" in request.POST:
                item_form = ControlFromItemForm(request.POST, prefix="item")
                if item_form.is_valid():
                    item = get_object_or_404(
                        Item, pk=item_form.cleaned_data["item"], project=project
                    )
                    control_create_from_item(
                        admin=request.user, item=item, stage=item_form.cleaned_data["stage"]
                    )
                    messages.success(request, _("The item is now a control."))
                    return redirect("review:quality:controls", slug=project.slug)
            else:
                file_form = ControlFileForm(request.POST, request.FILES, prefix="file")
                if file_form.is_valid():
                    upload = file_form.cleaned_data["file"]
                    made = control_file_import(
                        admin=request.user,
                        project=project,
                        data=upload.read(),
                        file_name=upload.name,
                        stage=file_form.cleaned_data["stage"],
                        expected_valid=file_form.cleaned_data["verdict"] == "1",
                    )
                    messages.success(
                        request, _("%(n)d controls created from the file.") % {"n": len(made)}
                    )
                    return redirect("review:quality:controls", slug=project.slug)
        except ReviewError as exc:
            error = " ".join(exc.messages)
    context = {
        "project": project,
        "controls": ControlItem.objects.filter(project=project)
        .select_related("item", "source_item")
        .order_by("-id")[:200],
        "item_form": item_form,
        "file_form": file_form,
        "error": error,
    }
    status = 422 if request.method == "POST" else 200
    return render(request, "review/quality/controls.html", context, status=status)


@login_required
@require_POST
def alert_second_opinion(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project = _project(request, slug)
    alert = get_object_or_404(ReliabilityAlert, pk=pk, project=project)
    try:
        second_opinion_request(alert=alert, admin=request.user)
        messages.success(
            request,
            _("From now on every first-pass verdict of this reviewer gets a second opinion."),
        )
    except ReviewError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("review:quality:reliability", slug=project.slug)


@login_required
@require_POST
def alert_close(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    project = _project(request, slug)
    alert = get_object_or_404(ReliabilityAlert, pk=pk, project=project)
    reliability_alert_close(alert=alert, admin=request.user)
    messages.info(request, _("The alert is closed."))
    return redirect("review:quality:reliability", slug=project.slug)
