"""Writes of the review app. People and roles live here; the workflow in the modules next to
it: queue (leases), first_pass, panels, consensus, rubric."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from medcot.roles import role_grant
from review.models import Profile


def profile_get_or_create(*, user) -> Profile:
    profile = Profile.objects.filter(user=user).first()
    if profile is None:
        profile = Profile.objects.create(user=user, pseudonym=f"x-{secrets.token_hex(6)}")
    return profile


def person_create(
    *,
    username: str,
    password: str,
    roles: list[str],
    display_name: str = "",
    email: str = "",
    specialties: list[str] | None = None,
):
    User = get_user_model()
    with transaction.atomic():
        user = User.objects.create_user(username=username, password=password, email=email)
        for role in roles:
            role_grant(user=user, role=role)
        profile = profile_get_or_create(user=user)
        profile.display_name = display_name
        profile.specialties = specialties or []
        profile.save()
    return user


def profile_language_set(*, user, language: str) -> None:
    """Keep the person's interface language on their profile, so it follows them to any
    machine. An empty language hands the choice back to the browser."""
    if language and language not in dict(settings.LANGUAGES):
        raise ValueError(f"Unknown interface language {language!r}")
    with transaction.atomic():
        profile = profile_get_or_create(user=user)
        profile.language = language
        profile.save(update_fields=["language"])
