"""API shapes. Serializers validate input and present rows; writes go through services."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from medcot.imports.formats import FORMATS, FormatError, ImportOptions, parse_mapping
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
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "language",
            "expansion_factor",
            "reanswer_attempts",
            "panel_size",
            "consensus_minimum",
            "first_pass_counts_for_consensus",
            "control_every",
            "control_threshold",
            "control_minimum",
            "double_review_percent",
            "created_at",
            "item_count",
            "approved_count",
        ]
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


class ImportBatchSerializer(serializers.ModelSerializer):
    created_by = UsernameField(read_only=True, allow_null=True)
    errors = serializers.ListField(
        child=serializers.DictField(),
        read_only=True,
        help_text="The first 100 problems (line 0 = the whole file); error_count counts all.",
    )
    warnings = serializers.ListField(child=serializers.DictField(), read_only=True)
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
            raise serializers.ValidationError(str(exc)) from exc

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
    errors = serializers.ListField(child=serializers.DictField())
    error_count = serializers.IntegerField()
    warnings = serializers.ListField(child=serializers.DictField())
    warning_count = serializers.IntegerField()
    message = serializers.CharField()


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


class RunProgressSerializer(serializers.Serializer):
    kind = serializers.CharField()
    label = serializers.CharField()
    total = serializers.IntegerField()
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    done = serializers.IntegerField()
    error = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    percent = serializers.IntegerField()


class RunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    stage = serializers.CharField()
    hands_off = serializers.BooleanField()
    state = serializers.CharField()
    message = serializers.CharField()
    limit = serializers.IntegerField(allow_null=True)
    profile = serializers.CharField(source="profile.name")
    created_by = UsernameField(allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    totals = RunProgressSerializer()


class RunDetailSerializer(RunSerializer):
    stages = RunProgressSerializer(many=True)


class RunStartSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=["cot", "expand", "reanswer", "all"])
    # Bounded by the database columns: a larger number is a 400, not an overflow in SQL.
    limit = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2_147_483_647
    )
    profile_id = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=2**63 - 1,
        help_text="An LLM profile; the default one if absent.",
    )


class ReleaseSerializer(serializers.Serializer):
    version = serializers.CharField()
    state = serializers.CharField()
    filters = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    license = serializers.CharField()
    notes = serializers.CharField()
    previous = serializers.CharField(source="previous.version", allow_null=True, default=None)
    item_count = serializers.IntegerField()
    excluded_without_consensus = serializers.IntegerField()
    zip_sha256 = serializers.CharField()
    files = serializers.DictField(child=serializers.DictField())
    error = serializers.CharField()
    build_seconds = serializers.FloatField(allow_null=True)
    created_by = UsernameField(allow_null=True)
    created_at = serializers.DateTimeField()
    built_at = serializers.DateTimeField(allow_null=True)
    download = serializers.SerializerMethodField()

    def get_download(self, release) -> str | None:
        from django.urls import reverse

        if release.state != "built":
            return None
        return reverse(
            "api-release-download",
            kwargs={"slug": release.project.slug, "version": release.version},
        )


class ReleaseCreateSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=40, help_text="e.g. v1.0 or 2026-11")
    filters = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField(max_length=100)),
        required=False,
        default=dict,
        help_text='{"specialties": [...], "languages": [...], "question_types": [...]}; '
        "empty means every approved item.",
    )
    license = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        help_text="Empty: the most restrictive licence of the items' sources.",
    )
    notes = serializers.CharField(required=False, allow_blank=True, default="")


class FirstPassSerializer(serializers.Serializer):
    reviewer = UsernameField()
    version = serializers.IntegerField(source="version.number")
    relevance = serializers.BooleanField()
    correctness = serializers.BooleanField()
    sufficiency = serializers.BooleanField()
    outcome = serializers.CharField()
    reason = serializers.CharField()
    comment = serializers.CharField()
    state = serializers.CharField()
    seconds_on_item = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class PanelMemberSerializer(serializers.Serializer):
    expert = UsernameField()
    why = serializers.CharField()
    joined_round = serializers.IntegerField()


class PanelSerializer(serializers.Serializer):
    state = serializers.CharField()
    round = serializers.IntegerField()
    version = serializers.IntegerField(source="round_version.number", allow_null=True)
    members = PanelMemberSerializer(source="memberships.all", many=True)
    created_at = serializers.DateTimeField()


class PanelDecisionSerializer(serializers.Serializer):
    round = serializers.IntegerField(source="decision.round")
    expert = UsernameField(source="decision.expert")
    version = serializers.IntegerField(source="decision.version.number")
    scores = serializers.DictField(child=serializers.IntegerField(allow_null=True))
    decision = serializers.CharField(source="decision.decision")
    answer = serializers.CharField(source="decision.answer")
    comment = serializers.CharField(source="decision.comment")
    first_wrong_step = serializers.IntegerField(source="decision.first_wrong_step", allow_null=True)
    created_at = serializers.DateTimeField(source="decision.created_at")


class ConsensusVoteSerializer(serializers.Serializer):
    expert = UsernameField()
    version = serializers.IntegerField(source="version.number")
    answer = serializers.CharField()
    approve_phrasing = serializers.BooleanField()
    comment = serializers.CharField()
    source = serializers.CharField()
    created_at = serializers.DateTimeField()


class AdjudicationSerializer(serializers.Serializer):
    admin = UsernameField()
    outcome = serializers.CharField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class ItemReviewsSerializer(serializers.Serializer):
    first_pass = FirstPassSerializer(many=True)
    panel = PanelSerializer(allow_null=True)
    decisions = PanelDecisionSerializer(many=True)
    votes = ConsensusVoteSerializer(many=True)
    adjudications = AdjudicationSerializer(many=True)


class PanelAssignSerializer(serializers.Serializer):
    experts = serializers.ListField(
        child=serializers.CharField(max_length=150),
        min_length=1,
        max_length=50,
        help_text="Usernames of the experts to seat.",
    )
