from django.contrib import admin

from generation.models import LLMCall, LLMProfile, PromptVersion, ReanswerAttempt, Run
from medcot.admin import ReadOnlyAdmin


@admin.register(LLMProfile)
class LLMProfileAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "base_url",
        "model",
        "api_key_env",
        "max_in_flight",
        "simulated",
        "is_default",
    ]
    fieldsets = [
        (None, {"fields": ["name", "base_url", "model", "alternate_models", "api_key_env"]}),
        (
            "Calls",
            {"fields": ["max_in_flight", "timeout_seconds", "max_retries", "structured_output"]},
        ),
        ("Sampling", {"fields": ["temperature", "top_p", "max_tokens"]}),
        ("Price", {"fields": ["price_input_per_m", "price_output_per_m"]}),
        (None, {"fields": ["simulated", "is_default", "enabled"]}),
    ]


@admin.register(PromptVersion)
class PromptVersionAdmin(admin.ModelAdmin):
    """Prompt versions are append-only: add a version (or use the "Edit" page), never change
    one that outputs may already point at."""

    list_display = ["task", "variant", "language", "number", "source", "created_at"]
    list_filter = ["task", "language", "source"]

    def has_change_permission(self, request, obj=None):
        return obj is None

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["pk", "project", "stage", "state", "profile", "created_at"]
    list_filter = ["state", "stage"]


@admin.register(LLMCall)
class LLMCallAdmin(ReadOnlyAdmin):
    list_display = ["pk", "task", "model", "outcome", "http_status", "latency_ms", "created_at"]
    list_filter = ["task", "outcome"]
    raw_id_fields = ["item", "run", "job"]


@admin.register(ReanswerAttempt)
class ReanswerAttemptAdmin(ReadOnlyAdmin):
    list_display = ["item", "number", "variant", "model", "answer", "parsed", "correct"]
    raw_id_fields = ["item", "llm_call"]
