from django.db import migrations, models
from django.db.models import F


def mark_existing_dispatched(apps, schema_editor):
    # Jobs from before this field were dispatched when they were queued; without this the first
    # sweep after the upgrade would send every queued job a second message.
    Job = apps.get_model("generation", "Job")
    Job.objects.filter(dispatched_at__isnull=True).update(dispatched_at=F("updated_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("generation", "0001_initial"),
        ("medcot", "0004_drop_redundant_fk_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="dispatched_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(mark_existing_dispatched, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("dispatched_at__isnull", True), ("state", "queued")),
                fields=["updated_at"],
                name="job_undispatched",
            ),
        ),
    ]
