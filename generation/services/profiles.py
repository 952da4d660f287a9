"""LLM endpoints (profiles): the default one, create, edit, test."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from generation.client import ProfileSnapshot
from generation.models import LLMProfile
from generation.services.common import GenerationError, log
from generation.services.facts import run_facts_clear

# -- profiles -------------------------------------------------------------------------------


def profile_default_get() -> LLMProfile:
    """The default profile, created from the environment on first use: MEDCOT_LLM_BASE_URL /
    MEDCOT_LLM_MODEL / MEDCOT_LLM_API_KEY, or the built-in simulator when no LLM is set."""
    profile = LLMProfile.objects.filter(is_default=True).first()
    if profile is not None:
        return profile
    if settings.MEDCOT_LLM_BASE_URL:
        fields = {
            "name": "default",
            "base_url": settings.MEDCOT_LLM_BASE_URL,
            "model": settings.MEDCOT_LLM_MODEL or "deepseek-reasoner",
            "api_key_env": settings.MEDCOT_LLM_API_KEY_ENV,
            "simulated": False,
        }
    else:
        fields = {
            "name": "simulator",
            "base_url": settings.MEDCOT_SIMULATOR_URL,
            "model": "sim-medcot",
            "api_key_env": "",
            "simulated": True,
            # The built-in simulator honours a strict JSON schema; a real endpoint starts at
            # "none" (the prompt asks for JSON) until "Test endpoint" finds what it honours.
            "structured_output": LLMProfile.Structured.JSON_SCHEMA,
        }
    fields.update(
        max_in_flight=settings.MEDCOT_LLM_MAX_IN_FLIGHT,
        timeout_seconds=settings.MEDCOT_LLM_TIMEOUT,
        is_default=True,
    )
    try:
        with transaction.atomic():
            return LLMProfile.objects.create(**fields)
    except IntegrityError:
        return LLMProfile.objects.get(is_default=True)


PROFILE_FIELDS = (
    "name",
    "base_url",
    "model",
    "alternate_models",
    "api_key_env",
    "max_in_flight",
    "timeout_seconds",
    "max_retries",
    "temperature",
    "top_p",
    "max_tokens",
    "structured_output",
    "price_input_per_m",
    "price_output_per_m",
    "simulated",
    "enabled",
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


def check_api_key_env(value: str) -> str:
    """The name of an environment variable, never a key: keys stay in the environment."""
    value = (value or "").strip()
    if not value:
        return ""
    if value.lower().startswith(("sk-", "sk_")) or (len(value) > 30 and value != value.upper()):
        raise GenerationError(
            _("This looks like a key. Put the key in an environment variable and enter its name.")
        )
    if not _ENV_NAME.match(value):
        raise GenerationError(
            _(
                "Enter the name of the environment variable that holds the key (letters, "
                "digits and _), not the key itself."
            )
        )
    return value


def _profile_fields(fields: dict) -> dict:
    unknown = set(fields) - set(PROFILE_FIELDS)
    if unknown:
        raise GenerationError(f"Unknown endpoint fields: {', '.join(sorted(unknown))}")
    values = dict(fields)
    if "api_key_env" in values:
        values["api_key_env"] = check_api_key_env(values["api_key_env"])
    if "alternate_models" in values:
        values["alternate_models"] = [
            m.strip() for m in values["alternate_models"] or [] if m.strip()
        ]
    return values


def _profile_clean(profile: LLMProfile) -> None:
    try:
        # An empty list of alternate models is fine, though a JSONField calls it blank.
        profile.full_clean(exclude=["last_test", "alternate_models"])
    except ValidationError as exc:
        raise GenerationError(
            " ".join(f"{name}: {' '.join(errors)}" for name, errors in exc.message_dict.items())
        ) from exc


def profile_create(*, fields: dict, actor=None) -> LLMProfile:
    """A new LLM endpoint. Its key stays in the environment variable it names."""
    values = _profile_fields(fields)
    profile = LLMProfile(**values)
    _profile_clean(profile)
    profile.save()
    log.info("LLM endpoint %s created by %s", profile.name, actor)
    return profile


def profile_update(*, profile: LLMProfile, fields: dict, actor=None) -> LLMProfile:
    """Change an endpoint. Workers see the change within `RUN_FACTS_SECONDS`. The default
    endpoint cannot be disabled: runs the review app opens by itself use it."""
    values = _profile_fields(fields)
    if values.get("enabled") is False and profile.is_default:
        raise GenerationError(_("The default endpoint cannot be disabled."))
    with transaction.atomic():
        changed = {k: v for k, v in values.items() if getattr(profile, k) != v}
        for name, value in changed.items():
            setattr(profile, name, value)
        _profile_clean(profile)
        profile.save()
    if changed:
        log.info("LLM endpoint %s changed by %s: %s", profile.name, actor, sorted(changed))
    run_facts_clear()
    return profile


def profile_test(*, profile: LLMProfile, actor=None, set_mode: bool = True) -> dict:
    """Live calls to the endpoint (`generation.probe`); the result is stored on the profile as
    `last_test`, and the structured-output mode found is set on it (unless `set_mode` is
    False). Returns the result."""
    from generation.probe import endpoint_probe

    result = endpoint_probe(ProfileSnapshot.of(profile)).as_dict()
    fields = {"last_test": result}
    if result["ok"] and set_mode and result["structured_output"]:
        fields["structured_output"] = result["structured_output"]
    LLMProfile.objects.filter(pk=profile.pk).update(**fields)
    for name, value in fields.items():
        setattr(profile, name, value)
    log.info("LLM endpoint %s tested by %s: %s", profile.name, actor, result)
    run_facts_clear()
    return result
