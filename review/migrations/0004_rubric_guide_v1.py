"""Ship version 1 of the written rubric standard. Admins edit it in the browser (each edit is a
new version); this text is only the starting point."""

from django.db import migrations

INTRODUCTION = (
    "Score the item as it stands: stem, options, key and explanation together. Score each "
    "dimension on its own; a weakness in one should not lower another. When unsure between two "
    "levels, choose the lower one and say why in the comment."
)

LEVELS = {
    "medical_correctness": {
        "0": "Contains a factual error, a wrong key, or advice that would harm a patient if followed.",
        "1": "The key and the main argument are right, but a secondary statement is imprecise, "
        "outdated or only true in some settings.",
        "2": "Every statement agrees with current guidelines and textbooks; the key is "
        "unambiguously the best answer.",
    },
    "reasoning_structure": {
        "0": "The explanation jumps to the answer, argues in a circle, or its steps contradict "
        "each other.",
        "1": "The steps lead to the answer, but some are missing, out of order, or some options "
        "are dismissed without a reason.",
        "2": "Findings → interpretation → conclusion in a clear order, and every option is "
        "addressed with a reason it is right or wrong.",
    },
    "information_sufficiency": {
        "0": "The stem lacks facts needed to reach the key, or more than one option can be "
        "defended from what is given.",
        "1": "The key can be reached, but only by assuming a fact the stem does not state.",
        "2": "The stem gives exactly what a competent physician needs to choose the key, and no "
        "other option fits.",
    },
    "terminology_clarity": {
        "0": "Wrong or misleading terms, undefined abbreviations, or wording that changes the "
        "meaning.",
        "1": "Correct terms but awkward, inconsistent or colloquial wording in places.",
        "2": "Precise standard terminology, consistent throughout, easy to read.",
    },
    "clinical_utility": {
        "0": "Teaches nothing useful for practice or for the exam, or tests a trivial detail.",
        "1": "Useful but narrow, or the explanation misses the clinical take-home point.",
        "2": "Tests a decision physicians face, and the explanation leaves a take-home point a "
        "trainee would remember.",
    },
}


def create_v1(apps, schema_editor):
    RubricGuide = apps.get_model("review", "RubricGuide")
    if not RubricGuide.objects.filter(version=1).exists():
        RubricGuide.objects.create(
            version=1, introduction=INTRODUCTION, levels=LEVELS, note="First version."
        )


class Migration(migrations.Migration):
    dependencies = [("review", "0003_workflow")]
    operations = [migrations.RunPython(create_v1, migrations.RunPython.noop)]
