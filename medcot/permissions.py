"""Who may see and do what: one module for the object-level rules of browser views and the API.

Roles are Django groups (`medcot.roles`). The rules, as the design states them:

- Anyone with a role (reviewer, expert, admin) sees the project list and a project's overview.
- Only admins create and configure projects, import seeds, see every item with its full
  history, see import reports and LLM logs, assign panels, and build and download releases.
- Reviewers see only the items they hold, experts only the panels they sit on; those rules
  belong to the app that owns queues and panels, which registers them here from its
  `AppConfig.ready` (`item_access_register`). The core never imports an app: with no rule
  registered, nobody but an admin holds anything, which is the safe answer.

Every `*_get_for_*` function answers in one order, so views and API views share one answer:
first the role (PermissionDenied whether or not the object exists, so a role without access
learns nothing), then existence (Http404), then the object's own rule (PermissionDenied).
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from medcot.models import ImportBatch, Item, Project
from medcot.roles import ADMIN, EXPERT, REVIEWER, has_role, require_role, roles_of

# `rule(user=…, items=…)` → the items of `items` that `user` holds now. Apps append theirs.
ItemAccessRule = Callable[..., QuerySet[Item]]
_item_access_rules: list[ItemAccessRule] = []


def item_access_register(rule: ItemAccessRule) -> None:
    """An app says which items a reviewer or expert holds (a queue claim, a panel seat).
    Called from the app's `AppConfig.ready`; registering the same rule twice is a no-op."""
    if rule not in _item_access_rules:
        _item_access_rules.append(rule)


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
    """Whether a reviewer or expert currently holds the item, by any registered rule."""
    return items_visible_to(user=user, items=Item.objects.filter(pk=item.pk)).exists()


def items_visible_to(*, user, items: QuerySet[Item]) -> QuerySet[Item]:
    """Narrow an item queryset to what the user may see: all for an admin; for a reviewer or
    expert, the items some registered rule says they hold; nothing for anyone else."""
    if is_admin(user):
        return items
    if not has_role(user, REVIEWER, EXPERT) or not _item_access_rules:
        return items.none()
    held = items.none()
    for rule in _item_access_rules:
        held = held | rule(user=user, items=items)
    return held


def can_view_llm_logs(user) -> bool:
    return is_admin(user)


def can_build_releases(user) -> bool:
    return is_admin(user)


def _project(slug: str) -> Project:
    project = Project.objects.filter(slug=slug).first()
    if project is None:
        raise Http404("No such project")
    return project


def project_get_for_user(*, user, slug: str) -> Project:
    if not is_member(user):
        raise PermissionDenied
    return _project(slug)


def project_get_for_admin(*, user, slug: str) -> Project:
    require_role(user, ADMIN)
    return _project(slug)


def item_get_for_user(*, user, project: Project, pk: int) -> Item:
    if not is_member(user):
        raise PermissionDenied
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
