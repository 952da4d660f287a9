"""Browser pages of the machine judge: its calibration per project and judge, the project's
judge settings (admins), and the judge's second opinion on an item, shown only to a person who
has given their own verdict on it, with feedback on its rationales (experts)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from generation.public import JudgeScore
from medcot.models import Item
from medcot.permissions import project_get_for_admin
from medcot.roles import EXPERT, has_role
from review.judge import services
from review.judge.calibration import CATEGORIES
from review.models import JudgeFeedback, JudgeSettings, RubricDimension
from review.services.common import ReviewError


class JudgeSettingsForm(forms.ModelForm):
    class Meta:
        model = JudgeSettings
        fields = ["kappa_threshold", "min_items", "order_queues", "second_review_on_zero"]


class JudgeFeedbackForm(forms.Form):
    judge_score = forms.IntegerField()
    dimension = forms.ChoiceField(choices=RubricDimension.choices)
    verdict = forms.ChoiceField(
        choices=JudgeFeedback.Verdict.choices, label=gettext_lazy("The rationale is")
    )


def _judge_choice(request: HttpRequest, judges: list[dict]):
    wanted = request.GET.get("judge", "")
    for judge in judges:
        key = judge["key"]
        if wanted == f"{key.profile_id}-{key.prompt_version_id}":
            return judge
    return judges[0] if judges else None


def calibration_context(request: HttpRequest, project, *, form=None) -> dict:
    judges = services.judges_of_project(project=project)
    for judge in judges:
        judge["param"] = f"{judge['key'].profile_id}-{judge['key'].prompt_version_id}"
    chosen = _judge_choice(request, judges)
    settings = services.judge_settings_get(project=project)
    labels = dict(RubricDimension.choices)
    calibration = services.calibration_for(project=project, judge=chosen["key"]) if chosen else None
    rows = []
    if calibration is not None:
        for row in calibration.dimensions:
            rows.append({"row": row, "label": labels[row.dimension]})
    return {
        "project": project,
        "judges": judges,
        "chosen": chosen,
        "calibration": calibration,
        "rows": rows,
        "categories": CATEGORIES,
        "settings": settings,
        "routing": services.judge_routing(project=project),
        "form": form or JudgeSettingsForm(instance=settings),
        "criteria": {
            "correctness": _("Medical correctness"),
            "sufficiency": _("Information sufficiency"),
            "overall": _("Overall verdict"),
        },
    }


@login_required
@require_GET
def calibration(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for_admin(user=request.user, slug=slug)
    return render(request, "review/judge/calibration.html", calibration_context(request, project))


@login_required
@require_POST
def settings_update(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for_admin(user=request.user, slug=slug)
    form = JudgeSettingsForm(request.POST, instance=services.judge_settings_get(project=project))
    if not form.is_valid():
        context = calibration_context(request, project, form=form)
        return render(request, "review/judge/calibration.html", context, status=422)
    data = form.cleaned_data
    try:
        services.judge_settings_update(actor=request.user, project=project, **data)
    except ReviewError as exc:
        form.add_error(None, " ".join(exc.messages))
        context = calibration_context(request, project, form=form)
        return render(request, "review/judge/calibration.html", context, status=422)
    messages.success(request, _("Judge settings saved."))
    return redirect("review:judge:calibration", slug=project.slug)


def _item_with_opinion(request: HttpRequest, pk: int):
    """The item and the judge's opinion for this person, or 404: an item they have not given
    a verdict on looks exactly like one the judge never scored."""
    item = get_object_or_404(Item.objects.select_related("project", "current_version"), pk=pk)
    opinion = services.second_opinion_for(user=request.user, item=item)
    if opinion is None:
        raise Http404
    return item, opinion


@login_required
@require_GET
def opinion(request: HttpRequest, pk: int) -> HttpResponse:
    item, found = _item_with_opinion(request, pk)
    return render(
        request,
        "review/judge/opinion.html",
        {"item": item, "opinion": found, "can_feedback": has_role(request.user, EXPERT)},
    )


@login_required
@require_POST
def feedback(request: HttpRequest, pk: int) -> HttpResponse:
    if not has_role(request.user, EXPERT):
        raise PermissionDenied
    item, found = _item_with_opinion(request, pk)
    form = JudgeFeedbackForm(request.POST)
    error = ""
    if form.is_valid() and form.cleaned_data["judge_score"] == found.score.pk:
        try:
            services.judge_feedback_record(
                actor=request.user,
                judge_score=JudgeScore.objects.get(pk=found.score.pk),
                dimension=form.cleaned_data["dimension"],
                verdict=form.cleaned_data["verdict"],
            )
        except ReviewError as exc:
            error = " ".join(exc.messages)
    else:
        error = _("Choose a dimension and whether the rationale is helpful or wrong.")
    found = services.second_opinion_for(user=request.user, item=item)
    context = {"item": item, "opinion": found, "can_feedback": True, "error": error}
    status = 422 if error else 200
    if request.htmx:
        return render(request, "review/judge/_second_opinion.html", context, status=status)
    if error:
        return render(request, "review/judge/opinion.html", context, status=status)
    messages.success(request, _("Thank you: your mark on the judge's rationale is recorded."))
    return redirect("review:judge:opinion", pk=item.pk)
