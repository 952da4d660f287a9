"""API views over the LLM endpoints (profiles): list, create, edit (including disabling) and
test. Admins only. Keys never pass through here: a profile names the environment variable that
holds its key."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from generation import selectors as generation_selectors
from generation import services as generation_services
from generation.models import LLMProfile
from medcot.api.errors import ERRORS, READ_ERRORS, invalid
from medcot.api.permissions import IsAdminRole


class EndpointSerializer(serializers.ModelSerializer):
    alternate_models = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False
    )
    call_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = LLMProfile
        fields = ["id", *LLMProfile.EDITABLE_FIELDS, "is_default", "last_test", "call_count"]
        read_only_fields = ["id", "is_default", "last_test", "call_count"]

    def validate_api_key_env(self, value: str) -> str:
        try:
            return generation_services.check_api_key_env(value)
        except generation_services.GenerationError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class EndpointTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    latency_ms = serializers.IntegerField(allow_null=True)
    reasoning_style = serializers.CharField()
    structured_output = serializers.CharField()
    answer_read = serializers.BooleanField()
    error = serializers.CharField()
    notes = serializers.ListField(child=serializers.CharField())
    tested_at = serializers.FloatField()


def _fields(data: dict) -> dict:
    return {k: v for k, v in data.items() if k in generation_services.PROFILE_FIELDS}


class EndpointList(generics.GenericAPIView):
    """LLM endpoints, the default first."""

    permission_classes = [IsAdminRole]
    serializer_class = EndpointSerializer
    # A handful of endpoints: one list, no pages.
    pagination_class = None

    @extend_schema(responses={200: EndpointSerializer(many=True), **READ_ERRORS})
    def get(self, request):
        generation_services.profile_default_get()
        profiles = generation_selectors.profiles_list()
        return Response(EndpointSerializer(profiles, many=True).data)

    @extend_schema(request=EndpointSerializer, responses={201: EndpointSerializer, **ERRORS})
    def post(self, request):
        form = EndpointSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            profile = generation_services.profile_create(
                fields=_fields(form.validated_data), actor=request.user
            )
        except generation_services.GenerationError as exc:
            return invalid({"non_field_errors": [str(exc)]})
        return Response(
            EndpointSerializer(profile).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api-endpoint", kwargs={"pk": profile.pk})},
        )


class EndpointDetail(generics.GenericAPIView):
    """One endpoint; PATCH changes it (`{"enabled": false}` disables it)."""

    permission_classes = [IsAdminRole]
    serializer_class = EndpointSerializer

    @extend_schema(responses={200: EndpointSerializer, **READ_ERRORS})
    def get(self, request, pk: int):
        return Response(EndpointSerializer(get_object_or_404(LLMProfile, pk=pk)).data)

    @extend_schema(request=EndpointSerializer, responses={200: EndpointSerializer, **ERRORS})
    def patch(self, request, pk: int):
        profile = get_object_or_404(LLMProfile, pk=pk)
        form = EndpointSerializer(profile, data=request.data, partial=True)
        form.is_valid(raise_exception=True)
        try:
            profile = generation_services.profile_update(
                profile=profile, fields=_fields(form.validated_data), actor=request.user
            )
        except generation_services.GenerationError as exc:
            return invalid({"non_field_errors": [str(exc)]})
        return Response(EndpointSerializer(profile).data)


class EndpointTest(generics.GenericAPIView):
    """A live test of the endpoint: latency, reasoning style, the structured-output mode its
    server honours (which is set on the endpoint) and, when it fails, why in plain words."""

    permission_classes = [IsAdminRole]
    serializer_class = EndpointTestSerializer

    @extend_schema(request=None, responses={200: EndpointTestSerializer, **READ_ERRORS})
    def post(self, request, pk: int):
        profile = get_object_or_404(LLMProfile, pk=pk)
        result = generation_services.profile_test(profile=profile, actor=request.user)
        return Response(EndpointTestSerializer(result).data)
