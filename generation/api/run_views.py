"""API views over generation runs: start, watch, pause/resume/cancel, and each run's LLM calls
(admins only). Thin: each calls generation's selector or service, which keeps its own rules.
No answer carries a key: calls name their profile, never the profile's key variable."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from generation import selectors as generation_selectors
from generation import services as generation_services
from generation.api import serializers as s
from generation.models import LLMCall, LLMProfile, Run
from medcot import permissions as rules
from medcot.api.errors import ERRORS, READ_ERRORS, invalid
from medcot.api.pagination import Cursor, CursorById
from medcot.api.permissions import IsAdminRole

RUN_CONTROLS = {
    "pause": generation_services.run_pause,
    "resume": generation_services.run_resume,
    "cancel": generation_services.run_cancel,
}


def _run_data(run: Run, *, detail: bool = False) -> dict:
    run.totals = generation_selectors.run_totals(run=run)
    if detail:
        run.stages = generation_selectors.run_progress(run=run)
        return s.RunDetailSerializer(run).data
    return s.RunSerializer(run).data


def _run_get(request, slug: str, pk: int) -> Run:
    return generation_selectors.run_get_for_admin(user=request.user, slug=slug, pk=pk)


class RunList(generics.GenericAPIView):
    """Generation runs of a project, newest first, with their progress. Admins only."""

    permission_classes = [IsAdminRole]
    serializer_class = s.RunSerializer
    pagination_class = Cursor

    def get_queryset(self):
        project = rules.project_get_for_admin(user=self.request.user, slug=self.kwargs["slug"])
        return Run.objects.filter(project=project).select_related("profile", "created_by")

    @extend_schema(responses={200: s.RunSerializer(many=True), **READ_ERRORS})
    def get(self, request, slug: str):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([_run_data(run) for run in page])

    @extend_schema(request=s.RunStartSerializer, responses={201: s.RunDetailSerializer, **ERRORS})
    def post(self, request, slug: str):
        project = rules.project_get_for_admin(user=request.user, slug=slug)
        form = s.RunStartSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        profile = None
        if data.get("profile_id") is not None:
            profile = LLMProfile.objects.filter(pk=data["profile_id"]).first()
            if profile is None:
                return invalid({"profile_id": ["No LLM profile with this id."]})
        try:
            run = generation_services.run_start(
                project=project,
                stage=data["stage"],
                profile=profile,
                limit=data.get("limit"),
                actor=request.user,
            )
        except generation_services.GenerationError as exc:
            return invalid({"stage": [str(exc)]})
        run = Run.objects.select_related("profile", "created_by").get(pk=run.pk)
        return Response(
            _run_data(run, detail=True),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api-run", kwargs={"slug": slug, "pk": run.pk})},
        )


class RunDetail(generics.GenericAPIView):
    permission_classes = [IsAdminRole]
    serializer_class = s.RunDetailSerializer

    @extend_schema(responses={200: s.RunDetailSerializer, **READ_ERRORS})
    def get(self, request, slug: str, pk: int):
        return Response(_run_data(_run_get(request, slug, pk), detail=True))


class RunControl(generics.GenericAPIView):
    """Pause, resume or cancel a run. A run already in the asked state is left as it is."""

    permission_classes = [IsAdminRole]
    serializer_class = s.RunDetailSerializer
    action_name = ""

    @extend_schema(request=None, responses={200: s.RunDetailSerializer, **READ_ERRORS})
    def post(self, request, slug: str, pk: int):
        run = _run_get(request, slug, pk)
        run = RUN_CONTROLS[self.action_name](run=run, actor=request.user)
        return Response(_run_data(run, detail=True))


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
