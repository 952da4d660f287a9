"""Who may see and do what: one module for the object-level rules of browser views and the API.

Roles are Django groups (`review.roles`). The rules, as the design states them:

- Anyone with a role (reviewer, expert, admin) sees the project list and a project's overview.
- Only admins create and configure projects, import seeds, see every item with its full
  history, see import reports and LLM logs, assign panels, and build and download releases.
- Reviewers see only the items they hold, experts only the panels they sit on; those rules
  belong to the review app's queues and are asked through `item_visible_to` once it has them.

Each `*_get_for_*` function raises Http404 for a missing object and PermissionDenied for a
present one the user may not see, so views and API views share one answer.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from medcot.models import ImportBatch, Item, Project
from review.roles import ADMIN, EXPERT, REVIEWER, has_role, roles_of


def is_member(user) -> bool:
    return bool(roles_of(user))


def is_admin(user) -> bool:
    return has_role(user, ADMIN)


def can_view_project(user, project: Project) -> bool:
    return is_member(user)


def can_manage_projects(user) -> bool:
    """Create and configure projects, import seeds, run the pipeline, build releases."""
    return is_admin(user)


def can_view_item(user, item: Item) -> bool:
    if is_admin(user):
        return True
    return has_role(user, REVIEWER, EXPERT) and item_held_by(user=user, item=item)


def item_held_by(*, user, item: Item) -> bool:
    """Whether a reviewer or expert currently holds the item (a queue claim or a panel seat).

    The review app owns queues and panels; until it exposes a selector for this, nobody but an
    admin holds anything, which is the safe answer.
    """
    try:
        from review import selectors as review_selectors
    except ImportError:
        return False
    check = getattr(review_selectors, "item_held_by", None)
    return bool(check(user=user, item=item)) if check is not None else False


def items_visible_to(*, user, items: QuerySet[Item]) -> QuerySet[Item]:
    """Narrow an item queryset to what the user may see (see `item_held_by`)."""
    if is_admin(user):
        return items
    if not has_role(user, REVIEWER, EXPERT):
        return items.none()
    try:
        from review import selectors as review_selectors
    except ImportError:
        return items.none()
    narrow = getattr(review_selectors, "items_held_by", None)
    return narrow(user=user, items=items) if narrow is not None else items.none()


def can_view_llm_logs(user) -> bool:
    return is_admin(user)


def can_build_releases(user) -> bool:
    return is_admin(user)


def project_get_for_user(*, user, slug: str) -> Project:
    project = Project.objects.filter(slug=slug).first()
    if project is None:
        raise Http404("No such project")
    if not can_view_project(user, project):
        raise PermissionDenied
    return project


def project_get_for_admin(*, user, slug: str) -> Project:
    project = project_get_for_user(user=user, slug=slug)
    if not can_manage_projects(user):
        raise PermissionDenied
    return project


def item_get_for_user(*, user, project: Project, pk: int) -> Item:
    item = (
        Item.objects.select_related("project", "current_version", "family")
        .filter(project=project, pk=pk)
        .first()
    )
    if item is None:
        raise Http404("No such item")
    if not can_view_item(user, item):
        raise PermissionDenied
    return item


def import_batch_get_for_user(*, user, project: Project, pk: int) -> ImportBatch:
    if not can_manage_projects(user):
        raise PermissionDenied
    batch = ImportBatch.objects.defer("content").filter(project=project, pk=pk).first()
    if batch is None:
        raise Http404("No such import")
    return batch
