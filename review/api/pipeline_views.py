"""API views over the generation runs and the releases: thin, each calls the owning app's
selector or service, which keeps its own rules."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from generation import selectors as generation_selectors
from generation import services as generation_services
from generation.models import LLMProfile, Run
from medcot import permissions as rules
from review.api import serializers as s
from review.api.errors import Conflict, ErrorSerializer
from review.api.pagination import Cursor
from review.api.permissions import IsAdminRole
from review.api.views import ERRORS, READ_ERRORS, _invalid
from review.releases import selectors as release_selectors
from review.releases import services as release_services
from review.releases.models import Release

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
    project = rules.project_get_for_admin(user=request.user, slug=slug)
    run = Run.objects.select_related("profile", "created_by").filter(project=project, pk=pk)
    found = run.first()
    if found is None:
        from django.http import Http404

        raise Http404("No such run")
    return found


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
                return _invalid({"profile_id": ["No LLM profile with this id."]})
        try:
            run = generation_services.run_start(
                project=project,
                stage=data["stage"],
                profile=profile,
                limit=data.get("limit"),
                actor=request.user,
            )
        except generation_services.GenerationError as exc:
            return _invalid({"stage": [str(exc)]})
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


class ReleaseList(generics.GenericAPIView):
    """Releases of a project, newest first. Admins only: they build and download them."""

    permission_classes = [IsAdminRole]
    serializer_class = s.ReleaseSerializer
    pagination_class = Cursor

    def get_queryset(self):
        project = rules.project_get_for_admin(user=self.request.user, slug=self.kwargs["slug"])
        return Release.objects.filter(project=project).select_related(
            "project", "previous", "created_by"
        )

    @extend_schema(responses={200: s.ReleaseSerializer(many=True), **READ_ERRORS})
    def get(self, request, slug: str):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ReleaseSerializer(page, many=True).data)

    @extend_schema(
        request=s.ReleaseCreateSerializer,
        responses={
            201: s.ReleaseSerializer,
            409: OpenApiResponse(ErrorSerializer, description="Version already exists"),
            **ERRORS,
        },
    )
    def post(self, request, slug: str):
        project = rules.project_get_for_admin(user=request.user, slug=slug)
        form = s.ReleaseCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        if Release.objects.filter(project=project, version=data["version"].strip()).exists():
            raise Conflict(f"Release {data['version']} already exists; releases are immutable.")
        try:
            release = release_services.release_create(
                project=project,
                version=data["version"],
                actor=request.user,
                filters=data["filters"],
                license=data["license"],
                notes=data["notes"],
            )
        except release_services.ReleaseError as exc:
            return _invalid({"non_field_errors": [str(exc)]})
        return Response(
            s.ReleaseSerializer(release).data,
            status=status.HTTP_201_CREATED,
            headers={
                "Location": reverse(
                    "api-release", kwargs={"slug": slug, "version": release.version}
                )
            },
        )


class ReleaseDetail(generics.GenericAPIView):
    permission_classes = [IsAdminRole]
    serializer_class = s.ReleaseSerializer

    @extend_schema(responses={200: s.ReleaseSerializer, **READ_ERRORS})
    def get(self, request, slug: str, version: str):
        release = release_selectors.release_get_for_admin(
            user=request.user, project_slug=slug, version=version
        )
        return Response(s.ReleaseSerializer(release).data)


class ReleaseDownload(generics.GenericAPIView):
    """The release's zip (data files, dataset card, checksums)."""

    permission_classes = [IsAdminRole]

    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY),
            **READ_ERRORS,
        }
    )
    def get(self, request, slug: str, version: str):
        from django.http import FileResponse

        release = release_selectors.release_get_for_admin(
            user=request.user, project_slug=slug, version=version
        )
        path = release_selectors.release_file_path(release=release, name=release.zip_name)
        response = FileResponse(
            path.open("rb"),
            as_attachment=True,
            filename=release.zip_name,
            content_type="application/zip",
        )
        response["X-Checksum-SHA256"] = release.zip_sha256
        return response
