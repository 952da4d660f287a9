"""Browser views for projects, items and seed imports. Thin: parse, call a service, render."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from django.views.decorators.http import require_http_methods

from medcot import selectors
from medcot.forms import FORMAT_LABELS, ImportPreviewForm, ProjectForm, SeedImportForm
from medcot.imports.service import (
    import_batch_confirm,
    import_batch_create,
    import_batch_discard,
    import_batch_set_options,
    import_options_from_batch,
    import_preview,
)
from medcot.lifecycle import Status
from medcot.models import ImportBatch, Item, Language, Project
from medcot.roles import ADMIN, has_role, require_role, roles_of
from medcot.services import project_create

CONTAINER_LABELS = {
    "json": _lazy("JSON document"),
    "jsonl": _lazy("JSON Lines"),
    "csv": _lazy("CSV"),
    "tsv": _lazy("TSV (tab-separated)"),
}


def _layout_label(fmt: str) -> str:
    if fmt in {"medqa-jsonl", "medmcqa-jsonl", "cmmlu-csv"}:
        return FORMAT_LABELS[fmt]
    if fmt == "mapped":
        return _("fields as mapped below")
    return _("fields recognised by their names")


def _require_member(user) -> None:
    if not roles_of(user):
        raise PermissionDenied


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("project_list")


@login_required
def project_list(request: HttpRequest) -> HttpResponse:
    _require_member(request.user)
    return render(
        request,
        "medcot/project_list.html",
        {
            "projects": selectors.project_list_with_counts(),
            "is_admin": has_role(request.user, ADMIN),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HttpRequest) -> HttpResponse:
    require_role(request.user, ADMIN)
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        project = project_create(
            name=data.pop("name"), slug=data.pop("slug"), actor=request.user, **data
        )
        messages.success(request, _("Project created. Import its seed questions next."))
        return redirect("project_import", slug=project.slug)
    return render(request, "medcot/project_new.html", {"form": form})


@login_required
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    _require_member(request.user)
    project = get_object_or_404(Project, slug=slug)
    filters = {
        "status": request.GET.get("status", ""),
        "language": request.GET.get("language", ""),
        "specialty": request.GET.get("specialty", ""),
        "query": request.GET.get("q", "").strip(),
    }
    if filters["status"] not in Status.values:
        filters["status"] = ""
    if filters["language"] not in Language.values:
        filters["language"] = ""
    counts = selectors.project_status_counts(project=project)
    page = Paginator(selectors.item_list(project=project, **filters), 50).get_page(
        request.GET.get("page")
    )
    context = {
        "project": project,
        "page": page,
        "filters": filters,
        "status_rows": [(status.value, status.label, counts[status.value]) for status in Status],
        "statuses": Status,
        "languages": selectors.project_breakdown(project=project, field="language"),
        "specialties": selectors.project_breakdown(project=project, field="specialty"),
        "imports": selectors.import_batches_recent(project=project),
        "is_admin": has_role(request.user, ADMIN),
    }
    if request.htmx and request.htmx.target == "item-table":
        return render(request, "medcot/_item_table.html", context)
    return render(request, "medcot/project_detail.html", context)


@login_required
def item_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    require_role(request.user, ADMIN)
    item = get_object_or_404(
        Item.objects.select_related("project", "current_version", "family"),
        pk=pk,
        project__slug=slug,
    )
    return render(
        request,
        "medcot/item_detail.html",
        {"item": item, "project": item.project, **selectors.item_history(item=item)},
    )


@login_required
@require_http_methods(["GET", "POST"])
def project_import(request: HttpRequest, slug: str) -> HttpResponse:
    require_role(request.user, ADMIN)
    project = get_object_or_404(Project, slug=slug)
    form = SeedImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        options = form.import_options(file_name=upload.name, mapping=form.cleaned_data["mapping"])
        batch = import_batch_create(
            project=project,
            data=upload.read(),
            file_name=upload.name,
            options=options,
            actor=request.user,
            preview=True,
        )
        return redirect("import_batch_preview", slug=project.slug, pk=batch.pk)
    return render(
        request,
        "medcot/project_import.html",
        {
            "project": project,
            "form": form,
            "imports": selectors.import_batches_recent(project=project),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def import_batch_preview(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    """What the import would do, with the mapping to correct, before anything is written."""
    require_role(request.user, ADMIN)
    batch = get_object_or_404(ImportBatch, pk=pk, project__slug=slug)
    if batch.state != ImportBatch.State.PREVIEW:
        return redirect("import_batch_detail", slug=slug, pk=pk)
    data = bytes(batch.content or b"")
    action = request.POST.get("action", "")
    if action == "discard":
        import_batch_discard(batch=batch)
        messages.info(request, _("The upload was discarded; nothing was imported."))
        return redirect("project_import", slug=slug)
    options = import_options_from_batch(batch)
    preview = import_preview(data=data, options=options, project=batch.project)
    form = ImportPreviewForm(
        initial={
            **ImportPreviewForm.initial_from(batch.options),
            **ImportPreviewForm.mapping_initial(preview.mapping),
        },
        columns=preview.columns,
    )
    if request.method == "POST":
        form = ImportPreviewForm(request.POST, columns=preview.columns)
        if form.is_valid():
            mapping = form.mapping()
            # The mapping as detected stays "detected" (a known layout keeps its ids); a changed
            # one is used as given.
            if mapping == {k: v for k, v in preview.mapping.items() if isinstance(v, str)}:
                mapping = options.mapping
            options = form.import_options(file_name=batch.file_name, mapping=mapping)
            if action == "import":
                import_batch_confirm(batch=batch, options=options)
                return redirect("import_batch_detail", slug=slug, pk=pk)
            batch = import_batch_set_options(batch=batch, options=options)
            return redirect("import_batch_preview", slug=slug, pk=pk)
    return render(
        request,
        "medcot/import_preview.html",
        {
            "project": batch.project,
            "batch": batch,
            "preview": preview,
            "form": form,
            "container_label": CONTAINER_LABELS.get(preview.container, preview.container),
            "format_label": _layout_label(preview.format),
        },
    )


@login_required
def import_batch_detail(request: HttpRequest, slug: str, pk: int) -> HttpResponse:
    require_role(request.user, ADMIN)
    batch = get_object_or_404(ImportBatch.objects.defer("content"), pk=pk, project__slug=slug)
    if batch.state == ImportBatch.State.PREVIEW:
        return redirect("import_batch_preview", slug=slug, pk=pk)
    context = {
        "project": batch.project,
        "batch": batch,
        "errors_shown": batch.errors[:500],
        "format_label": _layout_label(batch.format) if batch.format not in {"", "auto"} else "",
        "group_count": batch.items.exclude(group_id="").values("group_id").distinct().count()
        if batch.state == ImportBatch.State.DONE
        else 0,
        "poll_url": reverse("import_batch_detail", kwargs={"slug": slug, "pk": pk}),
    }
    if request.htmx:
        return render(request, "medcot/_import_status.html", context)
    return render(request, "medcot/import_batch_detail.html", context)
