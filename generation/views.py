"""Browser pages for admins: start and watch LLM runs; add, edit, test and disable LLM
endpoints; edit prompts."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from generation import selectors, services
from generation.forms import ProfileForm, PromptEditForm, RunStartForm
from generation.models import UNUSABLE_PREFIX, Job, LLMProfile, PromptVersion, Run
from generation.prompts import PromptError, prompt_version_edit
from medcot.models import Item, Project
from medcot.permissions import project_get_for_admin
from medcot.roles import ADMIN, require_role


def _project(request: HttpRequest, slug: str) -> Project:
    return project_get_for_admin(user=request.user, slug=slug)


def _run(request: HttpRequest, slug: str, pk: int) -> Run:
    return selectors.run_get_for_admin(user=request.user, slug=slug, pk=pk)


@login_required
def run_list(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(request, slug)
    form = RunStartForm(initial={"profile": services.profile_default_get()})
    return _render_list(request, project, form)


def _render_list(request, project, form, status=200):
    return render(
        request,
        "generation/run_list.html",
        {"project": project, "form": form, "runs": selectors.runs_for_project(project=project)},
        status=status,
    )


@login_required
@require_POST
def run_start_view(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project(request, slug)
    form = RunStartForm(request.POST)
    if not form.is_valid():
        return _render_list(request, project, form, status=400)
    run = services.run_start(
        project=project,
        stage=form.cleaned_data["stage"],
        profile=form.cleaned_data["profile"],
        limit=form.cleaned_data["limit"],
        actor=request.user,
    )
    messages.success(request, _("Run started."))
    return redirect("generation_run_detail", slug=project.slug, pk=run.pk)


def _detail_context(run: Run) -> dict:
    stages = selectors.run_progress(run=run)
    totals = selectors.run_totals(run=run, stages=stages)
    for stage, result in zip(stages, selectors.run_yields(run=run, stages=stages), strict=True):
        stage.result = result
    eta = selectors.run_eta_seconds(run=run, remaining=totals.queued + totals.running)
    return {
        "steps": selectors.run_reanswer_steps(run=run),
        "eta_seconds": eta,
        "eta_minutes": round(eta / 60) if eta else None,
        "min_yield_percent": round(100 * selectors.min_yield()),
        "run": run,
        "project": run.project,
        "stages": stages,
        "totals": totals,
        # A hands-off run stays open after its work is done, for what reviewers pass on later.
        "idle": run.state == Run.State.RUNNING
        and run.hands_off
        and totals.queued == 0
        and totals.running == 0,
        "stats": selectors.run_stats(run=run),
        "outcomes": selectors.run_item_statuses(run=run),
        "failed": selectors.run_failed_jobs(run=run),
    }


@login_required
def run_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    run = _run(request, slug, pk)
    context = _detail_context(run)
    if request.htmx:
        return render(request, "generation/_run_progress.html", context)
    return render(request, "generation/run_detail.html", context)


CONTROLS = {
    "pause": services.run_pause,
    "resume": services.run_resume,
    "cancel": services.run_cancel,
}


@login_required
@require_POST
def run_control(request: HttpRequest, slug: str, pk: int, action: str) -> HttpResponse:
    run = _run(request, slug, pk)
    control = CONTROLS.get(action)
    if control is None:
        raise Http404
    run = control(run=run, actor=request.user)
    if request.htmx:
        return render(request, "generation/_run_progress.html", _detail_context(run))
    return redirect("generation_run_detail", slug=slug, pk=pk)


@login_required
def run_replies(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """Examples of the run's replies that held nothing usable, with why."""
    run = _run(request, slug, pk)
    return render(
        request,
        "generation/run_replies.html",
        {
            "run": run,
            "project": run.project,
            "replies": selectors.run_unusable_replies(run=run),
            "prefix": UNUSABLE_PREFIX,
        },
    )


@login_required
@require_POST
def job_retry_view(request: HttpRequest, slug: str, pk: int, job_pk: int) -> HttpResponse:
    run = _run(request, slug, pk)
    job = get_object_or_404(Job, pk=job_pk, run=run)
    try:
        services.job_retry(job=job, actor=request.user)
    except services.GenerationError as exc:
        if request.htmx:
            return HttpResponse(str(exc), status=409)
        messages.error(request, str(exc))
    run.refresh_from_db()
    if request.htmx:
        return render(request, "generation/_run_progress.html", _detail_context(run))
    return redirect("generation_run_detail", slug=slug, pk=pk)


@login_required
@require_POST
def item_retry_view(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """The Retry button of an item in `error`: re-queues the LLM job that failed on it."""
    project = _project(request, slug)
    item = get_object_or_404(Item, pk=pk, project=project)
    try:
        services.item_retry(item=item, actor=request.user)
    except services.GenerationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("The failed LLM job was queued again."))
    return redirect("item_detail", slug, item.pk)


@login_required
def llm_settings(request: HttpRequest) -> HttpResponse:
    require_role(request.user, ADMIN)
    services.profile_default_get()
    return render(
        request,
        "generation/llm_settings.html",
        {
            "profiles": selectors.profiles_list(),
            "prompts": selectors.prompt_versions_current(),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_create(request: HttpRequest) -> HttpResponse:
    require_role(request.user, ADMIN)
    form = ProfileForm(request.POST or None, initial={"structured_output": "none"})
    if request.method == "POST" and form.is_valid():
        try:
            profile = services.profile_create(fields=form.profile_fields(), actor=request.user)
        except services.GenerationError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request,
                _(
                    "Endpoint %(name)s added. Test it to check that it answers and to set "
                    "its structured-output mode."
                )
                % {"name": profile.name},
            )
            return redirect(f"{reverse('generation_llm')}#endpoint-{profile.pk}")
    return render(
        request,
        "generation/endpoint_form.html",
        {"form": form, "profile": None},
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_http_methods(["GET", "POST"])
def endpoint_edit(request: HttpRequest, pk: int) -> HttpResponse:
    require_role(request.user, ADMIN)
    profile = get_object_or_404(LLMProfile, pk=pk)
    form = ProfileForm(request.POST or None, instance=profile)
    if request.method == "POST" and form.is_valid():
        try:
            services.profile_update(
                profile=profile, fields=form.profile_fields(), actor=request.user
            )
        except services.GenerationError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Endpoint %(name)s saved.") % {"name": profile.name})
            return redirect(f"{reverse('generation_llm')}#endpoint-{profile.pk}")
    return render(
        request,
        "generation/endpoint_form.html",
        {"form": form, "profile": profile},
        status=400 if request.method == "POST" else 200,
    )


@login_required
@require_POST
def endpoint_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Live calls to the endpoint; the result is shown and kept, and the structured-output
    mode found is set on the endpoint."""
    require_role(request.user, ADMIN)
    profile = get_object_or_404(LLMProfile, pk=pk)
    services.profile_test(profile=profile, actor=request.user)
    if request.htmx:
        return render(request, "generation/_endpoint_test.html", {"p": profile})
    return redirect(f"{reverse('generation_llm')}#endpoint-{profile.pk}")


@login_required
@require_POST
def endpoint_enabled(request: HttpRequest, pk: int) -> HttpResponse:
    """Disable or enable an endpoint (`enabled=0|1` in the form)."""
    require_role(request.user, ADMIN)
    profile = get_object_or_404(LLMProfile, pk=pk)
    enabled = request.POST.get("enabled") == "1"
    try:
        services.profile_update(profile=profile, fields={"enabled": enabled}, actor=request.user)
    except services.GenerationError as exc:
        messages.error(request, str(exc))
    else:
        if enabled:
            messages.success(request, _("Endpoint %(name)s enabled.") % {"name": profile.name})
        else:
            messages.success(request, _("Endpoint %(name)s disabled.") % {"name": profile.name})
    return redirect(f"{reverse('generation_llm')}#endpoint-{profile.pk}")


@login_required
@require_http_methods(["GET", "POST"])
def prompt_edit(request: HttpRequest, pk: int) -> HttpResponse:
    require_role(request.user, ADMIN)
    version = get_object_or_404(PromptVersion, pk=pk)
    form = PromptEditForm(
        request.POST or None, initial={"system": version.system, "template": version.template}
    )
    if request.method == "POST" and form.is_valid():
        try:
            new = prompt_version_edit(
                task=version.task,
                variant=version.variant,
                language=version.language,
                system=form.cleaned_data["system"],
                template=form.cleaned_data["template"],
                note=form.cleaned_data["note"],
                actor=request.user,
            )
        except PromptError as exc:
            form.add_error("template", str(exc))
        else:
            messages.success(request, _("Saved as version %(n)s.") % {"n": new.number})
            return redirect("generation_llm")
    history = PromptVersion.objects.filter(
        task=version.task, variant=version.variant, language=version.language
    ).order_by("-number")
    return render(
        request,
        "generation/prompt_edit.html",
        {"version": version, "form": form, "history": history},
        status=400 if request.method == "POST" else 200,
    )
