"""Interface language on the profile (the header's switcher keeps it there), and rubric guides
per language: the English v1 stays; a Chinese v1 written for Chinese physicians joins it. Admins
edit each language's guide in the browser like the English one (each edit a new version)."""

from django.conf import settings
from django.db import migrations, models

INTRODUCTION_ZH = (
    "请就题目的现状整体评分：题干、选项、答案与解析（思维链）一并考虑。各维度独立评分，"
    "某一维度的不足不应拉低其他维度的得分。在两个等级之间犹豫时，取较低的等级，并在评语中说明理由。"
)

LEVELS_ZH = {
    "medical_correctness": {
        "0": "存在事实性错误、答案错误，或按其建议处理会对患者造成伤害。",
        "1": "答案及主要论证正确，但有次要表述不够准确、已经过时，或仅在特定情形下成立。",
        "2": "所有表述均符合现行指南和权威教材；答案无疑是最佳选项。",
    },
    "reasoning_structure": {
        "0": "解析直接跳到答案、循环论证，或前后推理步骤相互矛盾。",
        "1": "推理步骤能够导出答案，但有遗漏或顺序混乱，或对部分选项未说明理由即予排除。",
        "2": "按“临床表现 → 分析判断 → 结论”的顺序清晰推进，并逐一说明每个选项正确或错误的理由。",
    },
    "information_sufficiency": {
        "0": "题干缺少得出答案所必需的信息，或根据已知信息可以为不止一个选项辩护。",
        "1": "可以得出答案，但必须假设题干未交代的某项事实。",
        "2": "题干恰好提供了合格医师选出答案所需的信息，且没有其他选项符合。",
    },
    "terminology_clarity": {
        "0": "术语错误或有误导性、缩写未加说明，或措辞改变了原意。",
        "1": "术语正确，但部分措辞生硬、前后不一致或过于口语化。",
        "2": "使用规范、准确的医学术语，全文一致，通顺易读。",
    },
    "clinical_utility": {
        "0": "对临床实践或考试没有实际帮助，或考查的是无关紧要的细节。",
        "1": "有一定价值但范围较窄，或解析未点明临床要点。",
        "2": "考查医师在实践中真正面对的决策，解析给出住院医师能记住的临床要点。",
    },
}


def create_zh_v1(apps, schema_editor):
    RubricGuide = apps.get_model("review", "RubricGuide")
    if not RubricGuide.objects.filter(language="zh-hans").exists():
        RubricGuide.objects.create(
            language="zh-hans",
            version=1,
            introduction=INTRODUCTION_ZH,
            levels=LEVELS_ZH,
            note="第一版（中文）。",
        )


class Migration(migrations.Migration):
    dependencies = [
        ("review", "0004_rubric_guide_v1"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="profile",
            name="language",
            field=models.CharField(blank=True, max_length=16, verbose_name="interface language"),
        ),
        migrations.AddField(
            model_name="rubricguide",
            name="language",
            field=models.CharField(default="en", max_length=16, verbose_name="language"),
        ),
        migrations.AlterField(
            model_name="rubricguide",
            name="version",
            field=models.PositiveIntegerField(),
        ),
        migrations.AddConstraint(
            model_name="rubricguide",
            constraint=models.UniqueConstraint(
                fields=("language", "version"), name="rubric_guide_one_version_per_language"
            ),
        ),
        migrations.RunPython(create_zh_v1, migrations.RunPython.noop),
    ]
