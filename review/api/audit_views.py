"""Admin-only API reads: what changed between two releases, and the LLM calls of a run.

Neither answer carries a key: calls name their profile, never the profile's key variable."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from generation.models import LLMCall
from review.api.errors import Conflict, ErrorSerializer
from review.api.pagination import CursorById
from review.api.permissions import IsAdminRole
from review.api.pipeline_views import _run_get
from review.api.views import ERRORS, READ_ERRORS
from review.releases import selectors as release_selectors
from review.releases.models import Release


class ReleaseChangeSerializer(serializers.Serializer):
    change = serializers.ChoiceField(choices=["added", "removed", "changed"])
    item_id = serializers.IntegerField()
    external_id = serializers.CharField()
    fields = serializers.ListField(child=serializers.CharField(), required=False)


class ReleaseDiffSummarySerializer(serializers.Serializer):
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    changed = serializers.IntegerField()
    fields = serializers.DictField(child=serializers.IntegerField())


class ReleaseDiffSerializer(serializers.Serializer):
    base = serializers.CharField()
    release = serializers.CharField()
    summary = ReleaseDiffSummarySerializer()
    changes = ReleaseChangeSerializer(many=True)
    truncated = serializers.BooleanField()


class ReleaseDiffQuerySerializer(serializers.Serializer):
    against = serializers.CharField(
        max_length=40, help_text="The version to compare with (the base of the diff)."
    )


class ReleaseDiff(generics.GenericAPIView):
    """What changed from release `against` to this one: counts of added, removed and changed
    items, the changed fields, and the first 200 changes."""

    permission_classes = [IsAdminRole]
    serializer_class = ReleaseDiffSerializer

    @extend_schema(
        parameters=[ReleaseDiffQuerySerializer],
        responses={
            200: ReleaseDiffSerializer,
            409: OpenApiResponse(ErrorSerializer, description="A release is not built"),
            **ERRORS,
        },
    )
    def get(self, request, slug: str, version: str):
        release = release_selectors.release_get_for_admin(
            user=request.user, project_slug=slug, version=version
        )
        query = ReleaseDiffQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        base = release_selectors.release_get_for_admin(
            user=request.user, project_slug=slug, version=query.validated_data["against"]
        )
        if release.state != Release.State.BUILT or base.state != Release.State.BUILT:
            raise Conflict(_("Both releases must be built before they can be compared."))
        page = release_selectors.release_diff_page(base=base, release=release)
        body = {
            "base": base.version,
            "release": release.version,
            "summary": {**page["summary"], "fields": dict(page["summary"]["fields"])},
            "changes": page["changes"],
            "truncated": page["truncated"],
        }
        return Response(ReleaseDiffSerializer(body).data)


class LLMCallSerializer(serializers.ModelSerializer):
    profile = serializers.CharField(source="profile.name")
    prompt_version = serializers.IntegerField(source="prompt_version_id", allow_null=True)

    class Meta:
        model = LLMCall
        fields = [
            "id",
            "profile",
            "job",
            "item",
            "task",
            "prompt_version",
            "model",
            "try_number",
            "outcome",
            "http_status",
            "error",
            "messages",
            "reply",
            "finish_reason",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "latency_ms",
            "created_at",
        ]
        read_only_fields = fields


class RunCalls(generics.ListAPIView):
    """Every LLM request of a run, oldest first, successful or not (the run's LLM log)."""

    permission_classes = [IsAdminRole]
    serializer_class = LLMCallSerializer
    pagination_class = CursorById

    def get_queryset(self):
        run = _run_get(self.request, self.kwargs["slug"], self.kwargs["pk"])
        return LLMCall.objects.filter(run=run).select_related("profile")

    @extend_schema(responses={200: LLMCallSerializer(many=True), **READ_ERRORS})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
