"""A project's language may be "mixed" (Chinese and English items); the demo project is."""

from django.db import migrations, models


def demo_is_mixed(apps, schema_editor):
    Project = apps.get_model("medcot", "Project")
    # The demo holds MedQA (English) and CMMLU (Chinese) questions.
    Project.objects.filter(slug="demo", language="zh").update(language="mixed")


class Migration(migrations.Migration):
    dependencies = [("medcot", "0006_project_min_pass_seconds")]

    operations = [
        migrations.AlterField(
            model_name="project",
            name="language",
            field=models.CharField(
                choices=[
                    ("zh", "Chinese"),
                    ("en", "English"),
                    ("mixed", "Mixed (Chinese and English)"),
                ],
                default="zh",
                max_length=8,
                verbose_name="default language",
            ),
        ),
        migrations.RunPython(demo_is_mixed, migrations.RunPython.noop),
    ]
