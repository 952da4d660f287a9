"""API shapes of generation's resources (runs, their progress)."""

from __future__ import annotations

from rest_framework import serializers

from medcot.api.serializers import UsernameField


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
    stage = serializers.ChoiceField(choices=["cot", "expand", "reanswer", "judge", "all"])
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
