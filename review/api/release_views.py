"""API views over releases (admins only): list, build, read, download, and what changed
between two. Thin: each calls the releases' selector or service, which keeps its own rules."""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from medcot import permissions as rules
from medcot.api.errors import ERRORS, READ_ERRORS, Conflict, ErrorSerializer, invalid
from medcot.api.pagination import Cursor
from medcot.api.permissions import IsAdminRole
from review.api import serializers as s
from review.releases import selectors as release_selectors
from review.releases import services as release_services
from review.releases.models import Release


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
        try:
            release = release_services.release_create(
                project=project,
                version=data["version"],
                actor=request.user,
                filters=data["filters"],
                license=data["license"],
                notes=data["notes"],
            )
        except release_services.ReleaseExists as exc:
            raise Conflict(str(exc)) from exc
        except release_services.ReleaseError as exc:
            return invalid({"non_field_errors": [str(exc)]})
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
