"""Recompute the stored near-duplicate bands with the NumPy MinHash of generation.dedup.

The bands are hashes of each item's 3-gram signature; the signature's hash changed (one
splitmix64 per packed 3-gram instead of one BLAKE2b per 3-gram string), so bands stored
before would never match bands computed now. Every item that has bands gets them again from
its current version's text.
"""

from django.db import migrations

CHUNK = 2000


def recompute(apps, schema_editor):
    from generation import dedup

    Band = apps.get_model("generation", "NearDuplicateBand")
    Item = apps.get_model("medcot", "Item")
    labels = "ABCDE"
    item_ids = sorted(set(Band.objects.values_list("item_id", flat=True)))
    for start in range(0, len(item_ids), CHUNK):
        chunk = item_ids[start : start + CHUNK]
        fields = ["pk", "project_id", "current_version__stem"]
        fields += [f"current_version__option_{label.lower()}" for label in labels]
        rows = Item.objects.filter(pk__in=chunk).values_list(*fields)
        fresh = []
        for item_id, project_id, stem, *options in rows:
            text = dedup.question_text(
                stem or "", {k: v for k, v in zip(labels, options, strict=True) if v}
            )
            for band, value in enumerate(dedup.bands(dedup.keys(text))):
                fresh.append(Band(project_id=project_id, item_id=item_id, band=band, value=value))
        Band.objects.filter(item_id__in=chunk).delete()
        Band.objects.bulk_create(fresh, batch_size=5000)


class Migration(migrations.Migration):
    dependencies = [("generation", "0002_job_dispatched_at")]

    operations = [migrations.RunPython(recompute, migrations.RunPython.noop)]
