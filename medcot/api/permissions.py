"""DRF permission classes, each a thin wrapper over a rule in `medcot.permissions`."""

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import SAFE_METHODS, BasePermission

from medcot import permissions as rules


class IsMember(BasePermission):
    """Any role (reviewer, expert, admin); outsiders with a login but no role are refused."""

    message = _("Your account has no MedCoT role; ask an admin to grant one.")

    def has_permission(self, request, view) -> bool:
        return rules.is_member(request.user)


class IsAdminRole(BasePermission):
    message = _("Only admins may do this.")

    def has_permission(self, request, view) -> bool:
        return rules.can_manage_projects(request.user)


class ReadMemberWriteAdmin(BasePermission):
    message = _("Only admins may change this.")

    def has_permission(self, request, view) -> bool:
        if request.method in SAFE_METHODS:
            return rules.is_member(request.user)
        return rules.can_manage_projects(request.user)
