"""API shapes of review's resources (releases, first passes, panels, consensus).
Serializers validate input and present rows; writes go through services."""

from __future__ import annotations

from rest_framework import serializers

from medcot.api.serializers import UsernameField


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
