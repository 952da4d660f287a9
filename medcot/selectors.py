"""Reads on the core domain."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from medcot.lifecycle import STAGES, Status
from medcot.models import Event, ImportBatch, Item, Project


def project_status_counts(*, project: Project) -> dict[str, int]:
    rows = Item.objects.filter(project=project).values("status").annotate(n=Count("id"))
    counts = {status.value: 0 for status in Status}
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def project_breakdown(*, project: Project, field: str) -> list[tuple[str, int]]:
    rows = (
        Item.objects.filter(project=project)
        .values(field)
        .annotate(n=Count("id"))
        .order_by("-n", field)
    )
    return [(row[field], row["n"]) for row in rows]


def project_list_with_counts() -> QuerySet[Project]:
    return Project.objects.annotate(
        item_count=Count("items"),
        approved_count=Count("items", filter=Q(items__status=Status.APPROVED)),
    )


def item_list(
    *,
    project: Project,
    status: str = "",
    stage: str = "",
    language: str = "",
    specialty: str = "",
    query: str = "",
) -> QuerySet[Item]:
    items = Item.objects.filter(project=project).select_related("current_version")
    if status:
        items = items.filter(status=status)
    if stage:
        items = items.filter(status__in=STAGES[stage])
    if language:
        items = items.filter(language=language)
    if specialty:
        items = items.filter(specialty=specialty)
    if query:
        items = items.filter(
            Q(external_id__icontains=query) | Q(current_version__stem__icontains=query)
        )
    return items.order_by("id")


def item_history(*, item: Item) -> dict:
    return {
        "versions": list(item.versions.select_related("author").order_by("-number")),
        "events": list(
            Event.objects.filter(item=item).select_related("actor").order_by("created_at", "id")
        ),
    }


def import_batches_recent(*, project: Project, limit: int = 10) -> QuerySet[ImportBatch]:
    return project.imports.defer("content", "errors").order_by("-created_at")[:limit]
