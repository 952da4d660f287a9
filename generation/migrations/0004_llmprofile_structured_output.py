"""Profiles choose a structured-output mode (json_schema / json_object / none) instead of a
json_object flag, can be disabled, keep the result of their last test, and accept base URLs on
single-label hosts."""

from django.db import migrations, models

import generation.models


def json_mode_to_structured(apps, schema_editor):
    LLMProfile = apps.get_model("generation", "LLMProfile")
    LLMProfile.objects.filter(json_mode=True).update(structured_output="json_object")
    # The built-in simulator honours a strict schema.
    LLMProfile.objects.filter(simulated=True).update(structured_output="json_schema")


def structured_to_json_mode(apps, schema_editor):
    LLMProfile = apps.get_model("generation", "LLMProfile")
    LLMProfile.objects.exclude(structured_output="none").update(json_mode=True)


class Migration(migrations.Migration):
    dependencies = [("generation", "0003_neardup_bands_numpy")]

    operations = [
        migrations.AddField(
            model_name="llmprofile",
            name="structured_output",
            field=models.CharField(
                choices=[
                    ("json_schema", "JSON schema (strict)"),
                    ("json_object", "JSON object"),
                    ("none", "None (the prompt asks for JSON)"),
                ],
                default="none",
                help_text=(
                    'How synthesis calls ask for JSON. "Test endpoint" finds which mode the '
                    "server honours and sets it."
                ),
                max_length=12,
                verbose_name="structured output",
            ),
        ),
        migrations.RunPython(json_mode_to_structured, structured_to_json_mode),
        migrations.RemoveField(model_name="llmprofile", name="json_mode"),
        migrations.AddField(
            model_name="llmprofile",
            name="enabled",
            field=models.BooleanField(
                default=True,
                help_text="Disabled endpoints cannot start new runs.",
                verbose_name="enabled",
            ),
        ),
        migrations.AlterField(
            model_name="llmprofile",
            name="base_url",
            field=models.CharField(
                max_length=500,
                validators=[generation.models.validate_base_url],
                verbose_name="base URL",
            ),
        ),
        migrations.AddField(
            model_name="llmprofile",
            name="last_test",
            field=models.JSONField(blank=True, default=dict, verbose_name="last test"),
        ),
    ]
