from django.conf import settings


def medcot(request):
    """What every page shows: the user's roles (and their names in the interface language)
    and whether the LLM is the simulator."""
    from medcot.roles import ROLE_LABELS, ROLES, roles_of

    user = getattr(request, "user", None)
    roles = roles_of(user) if user is not None and user.is_authenticated else frozenset()
    return {
        "user_roles": roles,
        "user_role_labels": [ROLE_LABELS[r] for r in ROLES if r in roles],
        "llm_simulated": not settings.MEDCOT_LLM_BASE_URL,
    }
