from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from medcot.imports.formats import FORMATS, FormatError, ImportOptions, parse_mapping
from medcot.imports.messages import localize
from medcot.licenses import SOURCE_LICENSES, UNKNOWN
from medcot.models import Language, Project, QuestionType


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = list(Project.EDITABLE_FIELDS)

    # Quality settings (review/quality) may be left empty: the model's defaults apply.
    OPTIONAL = ("control_every", "control_threshold", "control_minimum", "double_review_percent")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.OPTIONAL:
            self.fields[name].required = False

    def clean(self):
        cleaned = super().clean()
        for name in self.OPTIONAL:
            if cleaned.get(name) is None:
                cleaned[name] = Project._meta.get_field(name).default
        return cleaned


INDEX_BASES = [
    ("", _("Decide from the file")),
    ("0", _("0 = A (counted from 0)")),
    ("1", _("1 = A (counted from 1)")),
]
# The formats as the upload form offers them: one list, the importer's own.
FORMAT_LABELS = FORMATS
# The fields the preview lets people point at a column or key, in the order shown.
PREVIEW_FIELDS = [
    ("question", _("Question (stem)")),
    ("options", _("Options (one field: object, list or “A. …” lines)")),
    ("A", _("Option A")),
    ("B", _("Option B")),
    ("C", _("Option C")),
    ("D", _("Option D")),
    ("E", _("Option E")),
    ("answer", _("Answer")),
    ("id", _("Id")),
    ("specialty", _("Specialty")),
    ("case_text", _("Case text (shared by a case's questions)")),
    ("questions", _("A case's list of questions")),
    ("group_id", _("Case group id")),
    ("cot", _("Explanation (CoT)")),
    ("type", _("Question type")),
    ("source", _("Source")),
    ("language", _("Language")),
    ("difficulty", _("Difficulty")),
    ("cognitive_level", _("Cognitive level")),
]


class ImportSettingsForm(forms.Form):
    """How to read a file: shared by the upload page and the preview."""

    format = forms.ChoiceField(
        label=_("Format"), choices=list(FORMAT_LABELS.items()), initial="auto"
    )
    records_path = forms.CharField(
        label=_("Records path (JSON documents)"),
        required=False,
        max_length=200,
        help_text=_("Where the records are, e.g. data or data.questions. Found if left empty."),
    )
    first_row_is_data = forms.BooleanField(
        label=_("First row is data (CSV/TSV without a header row)"), required=False
    )
    index_base = forms.ChoiceField(label=_("Numeric answers"), choices=INDEX_BASES, required=False)
    source = forms.CharField(
        label=_("Source"),
        required=False,
        max_length=300,
        help_text=_("Recorded on every question; wins over a source detected from the layout."),
    )
    license = forms.ChoiceField(
        label=_("Licence of these questions"),
        choices=SOURCE_LICENSES,
        initial=UNKNOWN,
        required=False,
        help_text=_("Releases default to the most restrictive licence of their sources."),
    )
    specialty = forms.CharField(
        label=_("Specialty for every record"),
        required=False,
        max_length=100,
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

    def import_options(self, *, file_name: str, mapping: dict) -> ImportOptions:
        data = self.cleaned_data
        fmt = data["format"]
        return ImportOptions(
            format="mapped" if mapping and fmt == "auto" else fmt,
            file_name=file_name,
            specialty=data["specialty"].strip(),
            language=data["language"],
            question_type=data["question_type"],
            source=data["source"].strip(),
            mapping=mapping,
            records_path=data["records_path"].strip(),
            header="no" if data["first_row_is_data"] else "auto",
            index_base=data["index_base"],
            license=data["license"] or UNKNOWN,
        )

    @staticmethod
    def initial_from(options: dict) -> dict:
        return {
            "format": options.get("format", "auto"),
            "records_path": options.get("records_path", ""),
            "first_row_is_data": options.get("header") == "no",
            "index_base": options.get("index_base", ""),
            "source": options.get("source", ""),
            "license": options.get("license") or UNKNOWN,
            "specialty": options.get("specialty", ""),
            "language": options.get("language", ""),
            "question_type": options.get("question_type", ""),
        }


class SeedImportForm(ImportSettingsForm):
    file = forms.FileField(label=_("Seed file (JSON, JSONL, CSV or TSV; UTF-8)"))
    mapping = forms.CharField(
        label=_("Field mapping"),
        required=False,
        help_text=_(
            "Optional; the preview lets you pick columns. For example question=q,A=opa,B=opb,"
            "C=opc,D=opd,answer=ans, or by column number question=1,A=2 … answer=6"
        ),
    )
    field_order = ["file", "license", "source", "format", "records_path", "first_row_is_data"]

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
            raise forms.ValidationError(localize(exc.args[0])) from exc


class ImportPreviewForm(ImportSettingsForm):
    """The preview's settings and its mapping: one choice of column or key per field."""

    def __init__(self, *args, columns: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        choices = [("", _("— not in the file —")), *[(c, c) for c in columns]]
        for name, label in PREVIEW_FIELDS:
            self.fields[f"map_{name}"] = forms.ChoiceField(
                label=label, choices=choices, required=False
            )

    @staticmethod
    def mapping_initial(mapping: dict) -> dict:
        return {
            f"map_{name}": mapping.get(name, "")
            for name, _label in PREVIEW_FIELDS
            if isinstance(mapping.get(name, ""), str)
        }

    def mapping_fields(self):
        return [self[f"map_{name}"] for name, _label in PREVIEW_FIELDS]

    def settings_fields(self):
        return [self[name] for name in ImportSettingsForm.base_fields]

    def mapping(self) -> dict:
        return {
            name: self.cleaned_data[f"map_{name}"]
            for name, _label in PREVIEW_FIELDS
            if self.cleaned_data.get(f"map_{name}")
        }

    def clean(self):
        cleaned = super().clean()
        mapping = {
            name: cleaned.get(f"map_{name}")
            for name, _label in PREVIEW_FIELDS
            if cleaned.get(f"map_{name}")
        }
        if mapping and ("question" not in mapping or "answer" not in mapping):
            raise forms.ValidationError(
                _("Pick the column that holds the question and the one that holds the answer.")
            )
        return cleaned
