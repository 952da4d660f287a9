"""API shapes of the core's resources (projects, imports, items).
Serializers validate input and present rows; writes go through services."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from medcot.imports.formats import FORMATS, FormatError, ImportOptions, parse_mapping
from medcot.imports.messages import localize, localize_all
from medcot.licenses import SOURCE_LICENSES, UNKNOWN
from medcot.lifecycle import STAGES, Status
from medcot.models import (
    Event,
    ImportBatch,
    Item,
    ItemVersion,
    Language,
    Project,
    QuestionType,
)


class UsernameField(serializers.CharField):
    """A user shown by login name (admins read these; releases use pseudonyms instead). Where
    the column may be empty (an imported or LLM-written version, a system event), declare the
    field with `allow_null=True`: DRF answers null for a missing user without asking the field."""

    def to_representation(self, value) -> str:
        return value.get_username()


class ProjectSerializer(serializers.ModelSerializer):
    item_count = serializers.IntegerField(read_only=True, required=False)
    approved_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Project
        fields = ["id", *Project.EDITABLE_FIELDS, "created_at", "item_count", "approved_count"]
        read_only_fields = ["id", "created_at"]
        # The same bounds as the model's CheckConstraints, so bad settings are a 400 with the
        # field named rather than an IntegrityError.
        extra_kwargs = {
            "slug": {"required": False},
            "expansion_factor": {"min_value": 1, "max_value": 100},
            "reanswer_attempts": {"min_value": 1, "max_value": 20},
            "panel_size": {"min_value": 1, "max_value": 50},
            "consensus_minimum": {"min_value": 1, "max_value": 50},
            "control_every": {"min_value": 0, "max_value": 1000},
            "control_threshold": {"min_value": 0, "max_value": 100},
            "control_minimum": {"min_value": 1, "max_value": 1000},
            "double_review_percent": {"min_value": 0, "max_value": 100},
        }


class ProjectDetailSerializer(ProjectSerializer):
    status_counts = serializers.DictField(child=serializers.IntegerField(), read_only=True)

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "status_counts"]


class ImportProblemsField(serializers.ListField):
    """Import problems: `line`, `code`, `params` and `message` in the request's language."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.DictField(), **kwargs)

    def to_representation(self, data):
        return localize_all(data)


class ImportMessageField(serializers.CharField):
    def to_representation(self, value):
        return localize(value)


class ImportBatchSerializer(serializers.ModelSerializer):
    created_by = UsernameField(read_only=True, allow_null=True)
    errors = ImportProblemsField(
        read_only=True,
        help_text="The first 100 problems (line 0 = the whole file); error_count counts all. "
        "Each has line, code, params and message (in the request's language).",
    )
    warnings = ImportProblemsField(read_only=True)
    license = serializers.CharField(read_only=True, help_text="The licence of the source.")
    is_finished = serializers.BooleanField(read_only=True)

    class Meta:
        model = ImportBatch
        fields = [
            "id",
            "file_name",
            "sha256",
            "size_bytes",
            "format",
            "options",
            "state",
            "is_finished",
            "records",
            "created_count",
            "unchanged_count",
            "error_count",
            "errors",
            "warning_count",
            "warnings",
            "license",
            "duration_ms",
            "created_by",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields


class ImportBatchSummarySerializer(ImportBatchSerializer):
    class Meta(ImportBatchSerializer.Meta):
        fields = [f for f in ImportBatchSerializer.Meta.fields if f not in ("errors", "warnings")]
        read_only_fields = fields


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="The seed file: JSON, JSONL, CSV or TSV, UTF-8.")
    format = serializers.ChoiceField(choices=list(FORMATS), default="auto")
    specialty = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    language = serializers.ChoiceField(
        choices=["", *Language.values], required=False, allow_blank=True, default=""
    )
    question_type = serializers.ChoiceField(
        choices=["", *QuestionType.values], required=False, allow_blank=True, default=""
    )
    mapping = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="For other layouts: question=q,A=opa,B=opb,C=opc,D=opd,answer=ans, or by "
        "column number (question=1,A=2 … answer=6), or a JSON object.",
    )
    records_path = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=200,
        help_text="JSON documents: where the records are (e.g. data); found if empty.",
    )
    first_row_is_data = serializers.BooleanField(
        required=False, default=False, help_text="CSV/TSV without a header row."
    )
    index_base = serializers.ChoiceField(
        choices=["", "0", "1"],
        required=False,
        allow_blank=True,
        default="",
        help_text="Numeric answers count options from 0 or 1 (empty: decided from the file).",
    )
    source = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=300,
        help_text="Source of every record; wins over a source detected from the layout.",
    )
    license = serializers.ChoiceField(
        choices=[code for code, _label in SOURCE_LICENSES],
        required=False,
        default=UNKNOWN,
        help_text="The licence of the file's questions.",
    )

    def validate_file(self, upload):
        limit = settings.MEDCOT_MAX_UPLOAD_MB * 1024 * 1024
        if upload.size > limit:
            raise serializers.ValidationError(
                f"The file is {upload.size // (1024 * 1024)} MB; "
                f"the limit is {settings.MEDCOT_MAX_UPLOAD_MB} MB."
            )
        return upload

    def validate_mapping(self, value: str) -> dict[str, str]:
        try:
            return parse_mapping(value)
        except (FormatError, ValueError) as exc:
            raise serializers.ValidationError(localize(exc.args[0])) from exc

    def import_options(self) -> ImportOptions:
        data = self.validated_data
        return ImportOptions(
            format="mapped" if data["mapping"] and data["format"] == "auto" else data["format"],
            file_name=data["file"].name,
            specialty=data["specialty"].strip(),
            language=data["language"],
            question_type=data["question_type"],
            source=data["source"].strip(),
            mapping=data["mapping"],
            records_path=data["records_path"].strip(),
            header="no" if data["first_row_is_data"] else "auto",
            index_base=data["index_base"],
            license=data["license"],
        )


class ImportPreviewSerializer(serializers.Serializer):
    """What an import would do (the dry run): nothing is written."""

    ok = serializers.BooleanField(help_text="True if confirming would import every record.")
    format = serializers.CharField()
    container = serializers.CharField(help_text="jsonl, json, csv or tsv.")
    records_path = serializers.CharField(help_text="JSON documents: where the records were found.")
    header = serializers.BooleanField(allow_null=True, help_text="CSV/TSV: a header row or not.")
    columns = serializers.ListField(child=serializers.CharField())
    mapping = serializers.DictField(help_text="The mapping in use: our field → the file's name.")
    records = serializers.ListField(
        child=serializers.DictField(), help_text="The first five records as they would be stored."
    )
    record_count = serializers.IntegerField()
    group_count = serializers.IntegerField()
    errors = ImportProblemsField()
    error_count = serializers.IntegerField()
    warnings = ImportProblemsField()
    warning_count = serializers.IntegerField()
    message = ImportMessageField()


class ItemVersionSerializer(serializers.ModelSerializer):
    author = UsernameField(read_only=True, allow_null=True)
    options = serializers.DictField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = ItemVersion
        fields = [
            "number",
            "stem",
            "options",
            "answer",
            "cot",
            "reasoning",
            "author_kind",
            "author",
            "reason",
            "provenance",
            "created_at",
        ]
        read_only_fields = fields


class EventSerializer(serializers.ModelSerializer):
    actor = UsernameField(read_only=True, allow_null=True)

    class Meta:
        model = Event
        fields = ["id", "kind", "from_status", "to_status", "actor", "reason", "data", "created_at"]
        read_only_fields = fields


class ItemSerializer(serializers.ModelSerializer):
    family_id = serializers.IntegerField(read_only=True, allow_null=True)
    stem = serializers.SerializerMethodField()
    answer = serializers.SerializerMethodField()
    version = serializers.SerializerMethodField()

    class Meta:
        model = Item
        fields = [
            "id",
            "external_id",
            "kind",
            "family_id",
            "question_type",
            "specialty",
            "cognitive_level",
            "difficulty",
            "language",
            "source",
            "group_id",
            "group_order",
            "case_text",
            "status",
            "status_changed_at",
            "status_reason",
            "revision_status",
            "version",
            "stem",
            "answer",
            "created_at",
        ]
        read_only_fields = fields

    def get_stem(self, item: Item) -> str:
        return item.current_version.stem if item.current_version else ""

    def get_answer(self, item: Item) -> str:
        return item.current_version.answer if item.current_version else ""

    def get_version(self, item: Item) -> int | None:
        return item.current_version.number if item.current_version else None


class ItemDetailSerializer(ItemSerializer):
    current = ItemVersionSerializer(source="current_version", read_only=True, allow_null=True)
    # Filled by the view from `medcot.selectors.item_history` (newest version first, events in
    # the order they happened).
    versions = ItemVersionSerializer(source="history_versions", many=True, read_only=True)
    events = EventSerializer(source="history_events", many=True, read_only=True)

    class Meta(ItemSerializer.Meta):
        fields = [*ItemSerializer.Meta.fields, "current", "versions", "events"]
        read_only_fields = fields


class ItemFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Status.values, required=False)
    stage = serializers.ChoiceField(choices=list(STAGES), required=False)
    language = serializers.ChoiceField(choices=Language.values, required=False)
    specialty = serializers.CharField(required=False, max_length=100)
    q = serializers.CharField(required=False, max_length=200)
