"""Releases, for admins. Thin: parse, call a service or a selector,
render; htmx requests get the fragment that changes."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from medcot import licenses
from medcot.permissions import project_get_for_admin
from review.releases import selectors, services
from review.releases.forms import ReleaseForm
from review.releases.models import Release

SVG_TYPE = "image/svg+xml"
CONTENT_TYPES = {
    ".jsonl": "application/x-ndjson; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".sha256": "text/plain; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
    ".zip": "application/zip",
    ".svg": SVG_TYPE,
}


def _licence_check(form, *, sources: list[dict], default_license: str) -> list[dict]:
    """The sources under a stricter licence than the one chosen; a form error when one of them
    is known and the admin has not confirmed the looser licence."""
    chosen = form.cleaned_data["license"]
    looser = [r for r in sources if licenses.less_restrictive(chosen, r["code"])]
    known = [r for r in looser if r["code"] != licenses.UNKNOWN]
    if known and not form.cleaned_data["accept_license"]:
        form.add_error(
            "license",
            _(
                "%(chosen)s is less restrictive than the licence of some sources "
                "(%(sources)s). Choose %(default)s, or confirm below."
            )
            % {
                "chosen": licenses.label(chosen),
                "sources": ", ".join(r["label"] for r in known),
                "default": licenses.label(default_license),
            },
        )
    return looser


@login_required
@require_http_methods(["GET", "POST"])
def release_list(request: HttpRequest, slug: str) -> HttpResponse:
    project = project_get_for_admin(user=request.user, slug=slug)
    choices = selectors.filter_choices(project=project)
    sources = selectors.source_licenses(project=project)
    default_license = licenses.most_restrictive(row["code"] for row in sources)
    form = ReleaseForm(request.POST or None, choices=choices, initial={"license": default_license})
    status = 200
    if request.method == "POST":
        looser = []
        if form.is_valid():
            looser = _licence_check(form, sources=sources, default_license=default_license)
        if form.is_valid():
            chosen = form.cleaned_data["license"]
            if looser:
                messages.warning(
                    request,
                    _("Released under %(chosen)s although some sources are under %(sources)s.")
                    % {
                        "chosen": licenses.label(chosen),
                        "sources": ", ".join(r["label"] for r in looser),
                    },
                )
            try:
                release = services.release_create(
                    project=project,
                    version=form.cleaned_data["version"],
                    actor=request.user,
                    filters=form.filters(),
                    license=form.cleaned_data["license"],
                    notes=form.cleaned_data["notes"],
                    card_language=form.cleaned_data["card_language"],
                )
            except services.ReleaseError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, _("Release queued: a worker is building it."))
                return redirect("release_detail", slug=slug, version=release.version)
        status = 400
    return render(
        request,
        "releases/release_list.html",
        {
            "project": project,
            "form": form,
            "choices": choices,
            "sources": sources,
            "default_license": default_license,
            "releases": selectors.release_list(project=project),
        },
        status=status,
    )


@login_required
@require_GET
def release_detail(request: HttpRequest, slug: str, version: str) -> HttpResponse:
    release = selectors.release_get_for_admin(user=request.user, project_slug=slug, version=version)
    context = {
        "project": release.project,
        "release": release,
        "poll_url": reverse("release_detail", kwargs={"slug": slug, "version": version}),
    }
    if request.htmx:
        return render(request, "releases/_release_status.html", context)
    context["others"] = (
        selectors.release_list(project=release.project)
        .filter(state=Release.State.BUILT)
        .exclude(pk=release.pk)
    )
    context["card"] = selectors.release_card(
        release=release,
        chart_url=lambda name: reverse(
            "release_file", kwargs={"slug": slug, "version": version, "name": name}
        ),
    )
    return render(request, "releases/release_detail.html", context)


def _file_response(path, *, name: str, attachment: bool) -> FileResponse:
    content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    response = FileResponse(
        open(path, "rb"),  # noqa: SIM115 - FileResponse closes it when the response ends.
        as_attachment=attachment,
        filename=name,
        content_type=content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    if path.suffix == ".svg":
        # An SVG opened on its own must not run anything, whatever it contains.
        response["Content-Security-Policy"] = "default-src 'none'"
    return response


@login_required
@require_GET
def release_download(request: HttpRequest, slug: str, version: str) -> FileResponse:
    release = selectors.release_get_for_admin(user=request.user, project_slug=slug, version=version)
    path = selectors.release_file_path(release=release, name=release.zip_name)
    return _file_response(path, name=release.zip_name, attachment=True)


@login_required
@require_GET
def release_file(request: HttpRequest, slug: str, version: str, name: str) -> FileResponse:
    release = selectors.release_get_for_admin(user=request.user, project_slug=slug, version=version)
    path = selectors.release_file_path(release=release, name=name)
    inline = path.suffix == ".svg"
    return _file_response(path, name=path.name, attachment=not inline)


@login_required
@require_GET
def release_diff(request: HttpRequest, slug: str, version: str) -> HttpResponse:
    release = selectors.release_get_for_admin(user=request.user, project_slug=slug, version=version)
    others = (
        selectors.release_list(project=release.project)
        .filter(state=Release.State.BUILT)
        .exclude(pk=release.pk)
    )
    base_version = request.GET.get("base") or (release.previous.version if release.previous else "")
    context = {"project": release.project, "release": release, "others": others, "diff": None}
    if base_version:
        base = selectors.release_get_for_admin(
            user=request.user, project_slug=slug, version=base_version
        )
        context["base"] = base
        if release.state == Release.State.BUILT and base.state == Release.State.BUILT:
            context["diff"] = selectors.release_diff_page(base=base, release=release)
    return render(request, "releases/release_diff.html", context)


@login_required
@require_POST
def release_retry(request: HttpRequest, slug: str, version: str) -> HttpResponse:
    release = selectors.release_get_for_admin(user=request.user, project_slug=slug, version=version)
    if services.release_retry(release=release):
        messages.success(request, _("Build queued again."))
    else:
        messages.error(request, _("Only a failed build can be retried."))
    return redirect("release_detail", slug=slug, version=version)
