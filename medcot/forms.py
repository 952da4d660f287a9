from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from medcot.imports.formats import FORMATS, FormatError, parse_mapping
from medcot.models import Language, Project, QuestionType


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = [
            "name",
            "slug",
            "description",
            "language",
            "expansion_factor",
            "reanswer_attempts",
            "panel_size",
            "consensus_minimum",
            "first_pass_counts_for_consensus",
        ]


class SeedImportForm(forms.Form):
    file = forms.FileField(label=_("Seed file (JSONL or CSV, UTF-8)"))
    format = forms.ChoiceField(label=_("Format"), choices=list(FORMATS.items()), initial="auto")
    specialty = forms.CharField(
        label=_("Specialty for every record"),
        required=False,
        help_text=_("CMMLU-style files take it from the file name when left empty."),
    )
    language = forms.ChoiceField(
        label=_("Language"),
        required=False,
        choices=[("", _("Detect")), *Language.choices],
    )
    question_type = forms.ChoiceField(
        label=_("Question type"),
        required=False,
        choices=[("", _("From the file, else K")), *QuestionType.choices],
    )
    mapping = forms.CharField(
        label=_("Field mapping"),
        required=False,
        help_text=_("For other layouts: question=q,A=opa,B=opb,C=opc,D=opd,answer=ans"),
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.MEDCOT_MAX_UPLOAD_MB * 1024 * 1024
        if upload.size > limit:
            raise forms.ValidationError(
                _("The file is %(size)d MB; the limit is %(limit)d MB.")
                % {"size": upload.size // (1024 * 1024), "limit": settings.MEDCOT_MAX_UPLOAD_MB}
            )
        return upload

    def clean_mapping(self):
        try:
            return parse_mapping(self.cleaned_data.get("mapping", ""))
        except (FormatError, ValueError) as exc:
            raise forms.ValidationError(str(exc)) from exc
