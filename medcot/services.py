"""Writes on the core domain. Views, commands and tasks call these; nothing else writes."""

from __future__ import annotations

from django.db import transaction
from django.utils.text import slugify

from medcot.models import OPTION_LABELS, Event, Item, ItemVersion, Project, RevisionStatus


def project_create(*, name: str, actor=None, slug: str = "", **settings) -> Project:
    slug = slug or slugify(name)[:80] or "project"
    with transaction.atomic():
        project = Project.objects.create(
            name=name,
            slug=slug,
            created_by=actor if actor is not None and actor.is_authenticated else None,
            **settings,
        )
        Event.objects.create(
            project=project, actor=project.created_by, kind="project_created", data=settings
        )
    return project


def item_version_create(
    *,
    item: Item,
    author_kind: str,
    reason: str,
    author=None,
    stem: str | None = None,
    options: dict[str, str] | None = None,
    answer: str | None = None,
    cot: str | None = None,
    reasoning: str | None = None,
    provenance: dict | None = None,
    marks_modified: bool = False,
) -> ItemVersion:
    """Append a new content version built from the current one with the given changes.

    `marks_modified` records that a person (or a guided regeneration) changed the item after
    its first draft, which the release reports as "modified". Locks the item row so two edits
    cannot both become version N+1.
    """
    # No savepoint inside a caller's transaction: any error here aborts it anyway.
    with transaction.atomic(savepoint=False):
        locked = (
            Item.objects.select_for_update(of=("self",))
            .select_related("current_version")
            .get(pk=item.pk)
        )
        current = locked.current_version
        base_options = current.options if current else {}
        new_options = options if options is not None else base_options
        number = (
            ItemVersion.objects.filter(item_id=item.pk)
            .order_by("-number")
            .values_list("number", flat=True)
            .first()
            or 0
        ) + 1
        version = ItemVersion.objects.create(
            item_id=item.pk,
            number=number,
            stem=stem if stem is not None else (current.stem if current else ""),
            answer=answer if answer is not None else (current.answer if current else ""),
            cot=cot if cot is not None else (current.cot if current else ""),
            reasoning=reasoning if reasoning is not None else "",
            author_kind=author_kind,
            author=author if author is not None and author.is_authenticated else None,
            reason=reason,
            provenance=provenance or {},
            **{f"option_{label.lower()}": new_options.get(label, "") for label in OPTION_LABELS},
        )
        fields = {"current_version": version}
        if marks_modified:
            fields["revision_status"] = RevisionStatus.MODIFIED
        Item.objects.filter(pk=item.pk).update(**fields)
        Event.objects.create(
            project_id=locked.project_id,
            item_id=item.pk,
            actor=version.author,
            kind="version_created",
            reason=reason,
            data={"number": number, "author_kind": author_kind},
        )
    item.current_version = version
    if marks_modified:
        item.revision_status = RevisionStatus.MODIFIED
    return item.current_version
