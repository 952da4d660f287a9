"""Browser views of the review workflow. Thin: parse, call one service, render.

Every write answers an htmx request with the fragment to swap in and a plain form post with a
redirect (or the full page with the error), so the pages also work without JavaScript.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from medcot.lifecycle import Status
from medcot.models import Item
from medcot.roles import ADMIN, EXPERT, REVIEWER, has_role, require_role
from review import selectors
from review.forms import (
    AdjudicationForm,
    ConsensusVoteForm,
    FirstPassForm,
    PanelBulkForm,
    PanelFilterForm,
    PanelReviseForm,
    RegenerateForm,
    RubricGuideForm,
    RubricScoreForm,
)
from review.judge.services import first_pass_last_with_opinion, second_opinion_for
from review.models import Lease, PanelMembership, PanelState, RubricDimension, Stage
from review.services.assignment import (
    BULK_MAX,
    items_specialty_set,
    max_open_panels,
    panel_auto_choose,
    panel_experts_all,
    panels_assign_bulk,
)
from review.services.common import ReviewError
from review.services.consensus import consensus_settle_ready, consensus_tally, consensus_vote
from review.services.first_pass import (
    AlreadyJudged,
    ContentFix,
    first_pass_apply_due,
    first_pass_item_get,
    first_pass_skip,
    first_pass_submit,
    first_pass_undo,
    first_pass_undoable,
)
from review.services.panels import (
    adjudication_decide,
    panel_assign,
    panel_candidates,
    panel_refresh,
    panel_request_regeneration,
    panel_revise,
    panel_submit,
)
from review.services.queue import lease_release, queue_next
from review.services.rubric import rubric_guide_create, rubric_guide_current

SKIPPED_KEY = "review_skipped"


def _error_text(exc: ReviewError) -> str:
    return " ".join(exc.messages)


def _skipped(request: HttpRequest, stage: str) -> list[int]:
    return list(request.session.get(SKIPPED_KEY, {}).get(stage, []))


def _skip_remember(request: HttpRequest, stage: str, item_id: int) -> None:
    skipped = request.session.get(SKIPPED_KEY, {})
    ids = [pk for pk in skipped.get(stage, []) if pk != item_id]
    skipped[stage] = [*ids, item_id][-200:]
    request.session[SKIPPED_KEY] = skipped


# --- My queue -------------------------------------------------------------------------------


@login_required
@require_GET
def my_queue(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not has_role(user, REVIEWER, EXPERT, ADMIN):
        raise PermissionDenied
    now = timezone.now()
    _panels_refresh(user)
    context = {
        "first_pass_depth": Item.objects.filter(status=Status.FIRST_REVIEW).count()
        if has_role(user, REVIEWER, EXPERT)
        else None,
        "consensus_depth": Item.objects.filter(status=Status.CONSENSUS).count()
        if has_role(user, EXPERT)
        else None,
        "panels": selectors.expert_panel_queue(user=user) if has_role(user, EXPERT) else [],
        "held": Lease.objects.filter(holder=user, expires_at__gt=now).select_related("item"),
        "is_admin": has_role(user, ADMIN),
    }
    return render(request, "review/my_queue.html", context)


# --- First pass -----------------------------------------------------------------------------


def _first_pass_context(
    request: HttpRequest, *, form=None, error: str = "", notice: str = ""
) -> dict:
    first_pass_apply_due(limit=50)
    skipped = _skipped(request, Stage.FIRST_REVIEW)
    current, following = queue_next(
        user=request.user, stage=Stage.FIRST_REVIEW, exclude_ids=skipped
    )
    if current is None and skipped:
        # Only skipped items are left: offer them again rather than an empty queue.
        request.session.get(SKIPPED_KEY, {}).pop(Stage.FIRST_REVIEW, None)
        request.session.modified = True
        current, following = queue_next(user=request.user, stage=Stage.FIRST_REVIEW)
    return {
        "item": current,
        "following": following,
        "form": form,
        "error": error,
        "notice": notice,
        "undoable": first_pass_undoable(reviewer=request.user),
        # Offered only once the verdict can no longer be undone (no anchoring).
        "judge_opinion_item": first_pass_last_with_opinion(user=request.user),
        "criteria": [
            ("relevance", _("Relevance"), "1", "r"),
            ("correctness", _("Medical correctness"), "2", "m"),
            ("sufficiency", _("Information sufficiency"), "3", "s"),
        ],
        "now_ms": int(timezone.now().timestamp() * 1000),
    }


def _first_pass_values(context: dict, item=None) -> dict:
    """The form's values: what the reviewer posted (after an error) or the item's content."""
    form = context.get("form")
    if form is not None and form.is_bound and item is None:
        return form.data.dict()
    item = item or context.get("item")
    values = {"relevance": "1", "correctness": "1", "sufficiency": "1", "action": ""}
    if item is not None and item.current_version is not None:
        version = item.current_version
        values.update(stem=version.stem, answer=version.answer, cot=version.cot)
        values.update({f"option_{k.lower()}": v for k, v in version.options.items()})
    return values


def _render_first_pass(request: HttpRequest, context: dict, status: int = 200) -> HttpResponse:
    context["val"] = _first_pass_values(context)
    if context.get("following") is not None:
        context["next_val"] = _first_pass_values(context, item=context["following"])
    template = "review/_first_pass.html" if request.htmx else "review/first_pass.html"
    return render(request, template, context, status=status)


@login_required
@require_GET
def first_pass(request: HttpRequest) -> HttpResponse:
    require_role(request.user, REVIEWER, EXPERT)
    return _render_first_pass(request, _first_pass_context(request))


@login_required
@require_POST
def first_pass_submit_view(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        item = first_pass_item_get(user=request.user, pk=pk)
    except AlreadyJudged as exc:
        return _first_pass_moved_on(request, exc)
    form = FirstPassForm(request.POST)
    error = ""
    code = None
    if form.is_valid():
        data = form.cleaned_data
        fix = None
        if data["action"] == "fix":
            fix = ContentFix(
                stem=data["stem"],
                options={label: data[f"option_{label.lower()}"] for label in "ABCDE"},
                answer=data["answer"],
                cot=data["cot"],
            )
        try:
            first_pass_submit(
                item=item,
                reviewer=request.user,
                relevance=bool(data["relevance"]),
                correctness=bool(data["correctness"]),
                sufficiency=bool(data["sufficiency"]),
                action=data["action"],
                reason=data["reason"],
                comment=data["comment"],
                fix=fix,
                seconds_on_item=data.get("seconds"),
                confirm_mismatch=data["confirm_mismatch"],
                confirm_fast=data["confirm_fast"],
            )
        except AlreadyJudged as exc:  # a repeated post that raced the first one
            return _first_pass_moved_on(request, exc)
        except ReviewError as exc:
            error = _error_text(exc)
            code = getattr(exc, "code", None)
    else:
        error = " ".join(str(e) for errors in form.errors.values() for e in errors)
    if error:
        context = _first_pass_context(request, form=form, error=error)
        # Show the item the reviewer was working on, not whatever the queue would hand out.
        context["item"] = item
        context["need_fast"] = code == "confirm_fast"
        return _render_first_pass(request, context, status=422)
    if not request.htmx:
        return redirect("review:first_pass")
    return _render_first_pass(request, _first_pass_context(request))


@login_required
@require_POST
def first_pass_skip_view(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        first_pass_skip(user=request.user, pk=pk)
    except ReviewError as exc:
        return _first_pass_moved_on(request, exc)
    _skip_remember(request, Stage.FIRST_REVIEW, pk)
    if not request.htmx:
        return redirect("review:first_pass")
    return _render_first_pass(request, _first_pass_context(request))


def _first_pass_moved_on(request: HttpRequest, refusal: ReviewError) -> HttpResponse:
    """A verdict or skip the service refused although nothing is wrong with the page (a
    repeated post, an item no longer held): say so and show the queue as it is now."""
    if not request.htmx:
        messages.info(request, _error_text(refusal))
        return redirect("review:first_pass")
    return _render_first_pass(request, _first_pass_context(request, notice=_error_text(refusal)))


@login_required
@require_POST
def first_pass_undo_view(request: HttpRequest) -> HttpResponse:
    require_role(request.user, REVIEWER, EXPERT)
    try:
        review = first_pass_undo(reviewer=request.user)
    except ReviewError as exc:
        context = _first_pass_context(request, error=_error_text(exc))
        return _render_first_pass(request, context, status=422)
    context = _first_pass_context(request)
    context["undone"] = review
    if not request.htmx:
        messages.info(request, _("Your last submission was undone."))
        return redirect("review:first_pass")
    return _render_first_pass(request, context)


# --- Consensus queue ------------------------------------------------------------------------


def _consensus_item_context(item) -> dict:
    return {
        "item": item,
        "tally": consensus_tally(item=item),
        "attempts": selectors.reanswer_attempts(item=item),
        "first_pass": selectors.first_pass_reviews_for_item(item=item),
    }


def _consensus_context(request: HttpRequest, *, item=None, form=None, error: str = "") -> dict:
    """The item to vote on and, like first pass, the next one (already leased to the expert)
    rendered into the page, so the switch after a vote needs no round trip."""
    following = None
    if item is None:
        consensus_settle_ready()
        item, following = queue_next(
            user=request.user,
            stage=Stage.CONSENSUS,
            exclude_ids=_skipped(request, Stage.CONSENSUS),
        )
    context = {"item": None, "form": form, "error": error, "following": None}
    if item is not None:
        context.update(_consensus_item_context(item))
    if following is not None:
        context["following"] = following
        context["next"] = _consensus_item_context(following)
    return context


def _render_consensus(request: HttpRequest, context: dict, status: int = 200) -> HttpResponse:
    template = "review/_consensus.html" if request.htmx else "review/consensus.html"
    return render(request, template, context, status=status)


@login_required
@require_GET
def consensus(request: HttpRequest) -> HttpResponse:
    require_role(request.user, EXPERT)
    return _render_consensus(request, _consensus_context(request))


@login_required
@require_POST
def consensus_vote_view(request: HttpRequest, pk: int) -> HttpResponse:
    item = selectors.item_get_for_consensus(user=request.user, pk=pk)
    form = ConsensusVoteForm(request.POST)
    error = ""
    if form.is_valid():
        try:
            consensus_vote(
                item=item,
                expert=request.user,
                answer=form.cleaned_data["answer"],
                approve_phrasing=bool(form.cleaned_data["approve_phrasing"]),
                comment=form.cleaned_data["comment"],
                confirm_mismatch=form.cleaned_data["confirm_mismatch"],
            )
        except ReviewError as exc:
            error = _error_text(exc)
    else:
        error = " ".join(str(e) for errors in form.errors.values() for e in errors)
    if error:
        context = _consensus_context(request, item=item, form=form, error=error)
        return _render_consensus(request, context, status=422)
    if not request.htmx:
        return redirect("review:consensus")
    return _render_consensus(request, _consensus_context(request))


@login_required
@require_POST
def consensus_skip(request: HttpRequest, pk: int) -> HttpResponse:
    require_role(request.user, EXPERT)
    lease_release(user=request.user, item_id=pk, stage=Stage.CONSENSUS)
    _skip_remember(request, Stage.CONSENSUS, pk)
    if not request.htmx:
        return redirect("review:consensus")
    return _render_consensus(request, _consensus_context(request))


# --- Panels ---------------------------------------------------------------------------------


def _panels_refresh(user) -> None:
    """Start the next round of the person's panels whose guided regeneration has arrived."""
    for membership in PanelMembership.objects.filter(
        expert=user, panel__state=PanelState.REGENERATING
    ).select_related("panel__item"):
        panel_refresh(item=membership.panel.item)


WAITING_PAGE = 200
SCORE_FIELDS = {"scores", "decision", "answer", "comment"}


def _panels_context(request: HttpRequest, filter_form: PanelFilterForm, **extra) -> dict:
    user = request.user
    is_admin = has_role(user, ADMIN)
    context = {
        "is_admin": is_admin,
        "mine": selectors.expert_panel_queue(user=user) if has_role(user, EXPERT) else [],
        "open_panels": selectors.panels_open() if is_admin else [],
        "filter_form": filter_form,
        **extra,
    }
    for panel in context["open_panels"]:
        panel.deadlock = selectors.panel_deadlock_reason(panel=panel, item=panel.item)
    if is_admin:
        matching = selectors.panel_waiting_query(**filter_form.filters())
        context.update(
            waiting=list(matching[:WAITING_PAGE]),
            matching_count=matching.count(),
            specialties=selectors.panel_waiting_specialties(),
            expert_specialties=selectors.expert_specialties(),
            experts=panel_experts_all(),
            no_specialty=selectors.NO_SPECIALTY,
            bulk_max=BULK_MAX,
            max_open=max_open_panels(),
            filter_query=request.GET.urlencode() if request.method == "GET" else "",
        )
    return context


@login_required
@require_GET
def panels(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not has_role(user, EXPERT, ADMIN):
        raise PermissionDenied
    _panels_refresh(user)
    filter_form = PanelFilterForm(request.GET or None)
    return render(request, "review/panels.html", _panels_context(request, filter_form))


@login_required
@require_POST
def panels_bulk(request: HttpRequest) -> HttpResponse:
    """Assign panels to many items in one action (or set their specialty): the selected items,
    or every item matching the filter. Answers with the page and a summary of what was done."""
    require_role(request.user, ADMIN)
    form = PanelBulkForm(request.POST)
    result = None
    error = ""
    changed = None
    if not form.is_valid():
        error = " ".join(str(e) for errors in form.errors.values() for e in errors)
    else:
        data = form.cleaned_data
        if data["all_matching"]:
            items = list(selectors.panel_waiting_query(**form.filters())[: BULK_MAX + 1])
        else:
            items = list(
                Item.objects.filter(pk__in=data["items"])
                .select_related("project", "current_version")
                .order_by("status_changed_at", "id")
            )
        try:
            if not items:
                raise ReviewError(_("Select items first, or tick every item matching the filter."))
            if data["action"] == "specialty":
                changed = items_specialty_set(
                    items=items, specialty=data["new_specialty"], actor=request.user
                )
            else:
                experts = None
                if data["action"] == "chosen":
                    experts = list(get_user_model().objects.filter(pk__in=data["experts"]))
                result = panels_assign_bulk(items=items, actor=request.user, experts=experts)
        except ReviewError as exc:
            error = _error_text(exc)
    filter_form = PanelFilterForm(request.POST)
    context = _panels_context(
        request,
        filter_form,
        result=result,
        bulk_error=error,
        specialty_changed=changed,
        new_specialty=form.cleaned_data.get("new_specialty") if form.is_valid() else "",
    )
    return render(request, "review/panels.html", context, status=422 if error else 200)


def _assign_context(item, *, error: str = "") -> dict:
    try:
        _chosen, auto_why = panel_auto_choose(item=item)
    except ReviewError as exc:
        auto_why = _("Auto-assignment is not possible: %(why)s") % {"why": _error_text(exc)}
    return {
        "auto_why": auto_why,
        "item": item,
        "attempts": selectors.reanswer_attempts(item=item),
        "first_pass": selectors.first_pass_reviews_for_item(item=item),
        "candidates": panel_candidates(item=item),
        "error": error,
    }


@login_required
@require_GET
def panel_assign_page(request: HttpRequest, pk: int) -> HttpResponse:
    item = selectors.item_get_for_admin(user=request.user, pk=pk)
    if item.status != Status.PANEL:
        return redirect("review:panel_item", pk=item.pk)
    return render(request, "review/panel_assign.html", _assign_context(item))


@login_required
@require_POST
def panel_assign_view(request: HttpRequest, pk: int) -> HttpResponse:
    item = selectors.item_get_for_admin(user=request.user, pk=pk)
    why = ""
    try:
        if request.POST.get("auto"):
            result = panels_assign_bulk(items=[item], actor=request.user)
            if result.not_assigned:
                raise ReviewError(result.not_assigned[0].why)
            why = result.assigned[0].why
        else:
            try:
                ids = [int(value) for value in request.POST.getlist("experts")]
            except ValueError as exc:
                raise ReviewError(_("Choose experts from the list.")) from exc
            experts = list(get_user_model().objects.filter(pk__in=ids))
            panel_assign(item=item, experts=experts, actor=request.user)
    except ReviewError as exc:
        return render(
            request,
            "review/panel_assign.html",
            _assign_context(item, error=_error_text(exc)),
            status=422,
        )
    messages.success(request, " ".join([_("Panel assigned."), why]).strip())
    target = reverse("review:panel_item", kwargs={"pk": item.pk})
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return redirect(target)


def _panel_context(request: HttpRequest, item, panel, **extra) -> dict:
    user = request.user
    guide = rubric_guide_current()
    view = selectors.panel_round_view(panel=panel, user=user)
    is_member = any(m.expert_id == user.pk for m in view["members"])
    levels = guide.levels if guide else {}
    return {
        "item": item,
        "panel": panel,
        "guide": guide,
        "dimensions": [
            (d.value, d.label, levels.get(d.value, {}), str(index + 1))
            for index, d in enumerate(RubricDimension)
        ],
        "attempts": selectors.reanswer_attempts(item=item),
        "first_pass": selectors.first_pass_reviews_for_item(item=item),
        "is_member": is_member,
        "is_admin": has_role(user, ADMIN),
        "can_score": is_member
        and panel.state == PanelState.SCORING
        and item.status == Status.PANEL_REVIEW
        and view["my_decision"] is None,
        "can_revise": is_member and panel.state == PanelState.REVISING,
        "experts": panel_candidates(item=item, exclude_ids={m.expert_id for m in view["members"]})
        if has_role(user, ADMIN)
        else [],
        "now_ms": int(timezone.now().timestamp() * 1000),
        "deadlock": selectors.panel_deadlock_reason(panel=panel, item=item),
        "current_round": next((r for r in view["rounds"] if r["number"] == panel.round), None),
        # None until this expert has submitted their own verdict on the item (no anchoring).
        "judge_opinion": second_opinion_for(user=user, item=item),
        **view,
        **extra,
    }


def _next_panel_to_score(user, *, exclude_pk: int):
    """The expert's next panel item waiting for their scores (not `exclude_pk`), or None."""
    for row in selectors.expert_panel_queue(user=user):
        if row["todo"] == "score" and row["item"].pk != exclude_pk:
            return row["item"], row["panel"]
    return None


def _render_panel(request, item, panel, status: int = 200, **extra) -> HttpResponse:
    """The panel page of one item; while the expert can score it, the next panel item waiting
    for their scores is rendered into the page too, so it is on screen at once after a
    submission (like the first-pass and consensus queues)."""
    context = _panel_context(request, item, panel, **extra)
    if context["can_score"]:
        following = _next_panel_to_score(request.user, exclude_pk=item.pk)
        if following is not None:
            next_item, next_panel = following
            context["following"] = next_item
            context["next_html"] = render_to_string(
                "review/_panel_item.html",
                _panel_context(request, next_item, next_panel),
                request=request,
            )
    template = "review/_panel_slot.html" if request.htmx else "review/panel_item.html"
    return render(request, template, context, status=status)


@login_required
@require_GET
def panel_item(request: HttpRequest, pk: int) -> HttpResponse:
    item, panel = selectors.item_get_for_panel_member(user=request.user, pk=pk)
    panel = panel_refresh(item=item) or panel
    item.refresh_from_db()
    return _render_panel(request, item, panel)


def _panel_write_done(request: HttpRequest, pk: int, message: str) -> HttpResponse:
    item, panel = selectors.item_get_for_panel_member(user=request.user, pk=pk)
    if not request.htmx:
        messages.success(request, message)
        return redirect("review:panel_item", pk=pk)
    return _render_panel(request, item, panel, notice=message)


@login_required
@require_POST
def panel_score(request: HttpRequest, pk: int) -> HttpResponse:
    item, panel = selectors.item_get_for_panel_member(user=request.user, pk=pk)
    form = RubricScoreForm(request.POST)
    if not form.is_valid():
        # Each message names its field and is shown next to it; the summary on top lists them.
        field_errors = {name: " ".join(errors) for name, errors in form.errors.items()}
        if any(name.startswith("score_") for name in field_errors):
            field_errors["scores"] = " ".join(
                v for k, v in field_errors.items() if k.startswith("score_")
            )
        return _render_panel(
            request,
            item,
            panel,
            status=422,
            error=_("Some answers are missing; see the marked fields."),
            form=form,
            field_errors=field_errors,
        )
    data = form.cleaned_data
    try:
        panel_submit(
            item=item,
            expert=request.user,
            scores=form.scores(),
            decision=data["decision"],
            answer=data["answer"],
            comment=data["comment"],
            first_wrong_step=data.get("first_wrong_step"),
            seconds_on_item=data.get("seconds") or 0,
        )
    except ReviewError as exc:
        field = exc.code if exc.code in SCORE_FIELDS else None
        return _render_panel(
            request,
            item,
            panel,
            status=422,
            error=_error_text(exc),
            form=form,
            field_errors={field: _error_text(exc)} if field else {},
        )
    done = _("Your scores for %(item)s are in.") % {"item": item.external_id}
    following = _next_panel_to_score(request.user, exclude_pk=item.pk)
    if request.htmx and following is not None:
        # Straight on to the next panel item waiting for this expert's scores.
        next_item, next_panel = following
        response = _render_panel(request, next_item, next_panel, notice=done)
        response["HX-Push-Url"] = reverse("review:panel_item", kwargs={"pk": next_item.pk})
        return response
    return _panel_write_done(request, pk, done)


@login_required
@require_POST
def panel_revise_view(request: HttpRequest, pk: int) -> HttpResponse:
    item, panel = selectors.item_get_for_panel_member(user=request.user, pk=pk)
    form = PanelReviseForm(request.POST)
    try:
        if not form.is_valid():
            raise ReviewError(" ".join(str(e) for errors in form.errors.values() for e in errors))
        panel_revise(
            item=item,
            expert=request.user,
            reason=form.cleaned_data["reason"],
            cot=form.cleaned_data["cot"],
            answer=form.cleaned_data["answer"],
            **form.content(),
        )
    except ReviewError as exc:
        return _render_panel(request, item, panel, status=422, error=_error_text(exc))
    return _panel_write_done(request, pk, _("Revision saved; a new scoring round has started."))


@login_required
@require_POST
def panel_regenerate(request: HttpRequest, pk: int) -> HttpResponse:
    item, panel = selectors.item_get_for_panel_member(user=request.user, pk=pk)
    form = RegenerateForm(request.POST)
    try:
        if not form.is_valid():
            raise ReviewError(_("Tell the model what to change."))
        panel_request_regeneration(
            item=item, expert=request.user, guidance=form.cleaned_data["guidance"]
        )
    except ReviewError as exc:
        return _render_panel(request, item, panel, status=422, error=_error_text(exc))
    return _panel_write_done(
        request, pk, _("Regeneration requested; the next round starts when it arrives.")
    )


@login_required
@require_POST
def adjudicate(request: HttpRequest, pk: int) -> HttpResponse:
    item = selectors.item_get_for_admin(user=request.user, pk=pk)
    form = AdjudicationForm(request.POST)
    expert = None
    try:
        if not form.is_valid():
            raise ReviewError(_("Choose a decision and give a reason."))
        if form.cleaned_data.get("expert"):
            expert = get_user_model().objects.filter(pk=form.cleaned_data["expert"]).first()
        adjudication_decide(
            item=item,
            admin=request.user,
            outcome=form.cleaned_data["outcome"],
            reason=form.cleaned_data["reason"],
            expert=expert,
        )
    except ReviewError as exc:
        if request.htmx:
            return render(request, "review/_error.html", {"error": _error_text(exc)}, status=422)
        messages.error(request, _error_text(exc))
        return redirect("review:history", pk=pk)
    messages.success(request, _("Decision recorded."))
    target = reverse("review:history", kwargs={"pk": pk})
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = target
        return response
    return redirect(target)


# --- History, overview, rubric guide --------------------------------------------------------


@login_required
@require_GET
def history(request: HttpRequest, pk: int) -> HttpResponse:
    item = selectors.item_get_for_history(user=request.user, pk=pk)
    context = {
        "item": item,
        "is_admin": has_role(request.user, ADMIN),
        **selectors.item_full_history(item=item, viewer=request.user),
    }
    if item.status == Status.CONSENSUS:
        context["tally"] = consensus_tally(item=item)
    return render(request, "review/history.html", context)


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    require_role(request.user, ADMIN)
    first_pass_apply_due(limit=200)
    consensus_settle_ready()
    return render(request, "review/overview.html", selectors.overview_stats())


@login_required
@require_GET
def rubric_guide(request: HttpRequest) -> HttpResponse:
    if not has_role(request.user, REVIEWER, EXPERT, ADMIN):
        raise PermissionDenied
    guide = rubric_guide_current()
    return render(
        request,
        "review/rubric_guide.html",
        {
            "guide": guide,
            "dimensions": [
                (d.label, (guide.levels if guide else {}).get(d.value, {})) for d in RubricDimension
            ],
            "is_admin": has_role(request.user, ADMIN),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def rubric_guide_edit(request: HttpRequest) -> HttpResponse:
    require_role(request.user, ADMIN)
    current = rubric_guide_current()
    form = RubricGuideForm(request.POST or None, guide=current)
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            guide = rubric_guide_create(
                actor=request.user,
                introduction=form.cleaned_data["introduction"],
                levels=form.levels(),
                note=form.cleaned_data["note"],
                language=current.language if current else get_language(),
            )
        except ReviewError as exc:
            error = _error_text(exc)
        else:
            messages.success(request, _("Rubric guide version %(n)d saved.") % {"n": guide.version})
            return redirect("review:rubric_guide")
    status = 422 if request.method == "POST" else 200
    return render(
        request,
        "review/rubric_guide_edit.html",
        {"form": form, "guide": current, "error": error},
        status=status,
    )
