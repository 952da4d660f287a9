"""Roles are Django groups. One place answers "what may this person do?"."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext_lazy as _

REVIEWER = "reviewer"
EXPERT = "expert"
ADMIN = "admin"
ROLES = (REVIEWER, EXPERT, ADMIN)
ROLE_LABELS = {REVIEWER: _("reviewer"), EXPERT: _("expert"), ADMIN: _("admin")}


def roles_of(user) -> frozenset[str]:
    if user is None or not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_medcot_roles", None)
    if cached is None:
        names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if user.is_superuser:
            names.add(ADMIN)
        cached = frozenset(names)
        user._medcot_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    return bool(roles_of(user) & set(roles))


def require_role(user, *roles: str) -> None:
    if not has_role(user, *roles):
        raise PermissionDenied


def ensure_role_groups() -> dict[str, Group]:
    return {name: Group.objects.get_or_create(name=name)[0] for name in ROLES}


def role_grant(*, user, role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"Unknown role {role!r}")
    user.groups.add(ensure_role_groups()[role])
    if hasattr(user, "_medcot_roles"):
        del user._medcot_roles
