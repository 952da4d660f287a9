"""API views of the core's resources (sign-in tokens, projects, imports, items): parse input,
call one selector or service, present the result."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.urls import reverse
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import generics, serializers, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from medcot import permissions as rules
from medcot import selectors
from medcot.api import serializers as s
from medcot.api.errors import (
    ERRORS,
    READ_ERRORS,
    ErrorSerializer,
    PayloadTooLarge,
    error_body,
    invalid,
)
from medcot.api.pagination import Cursor, CursorById
from medcot.api.permissions import IsAdminRole, IsMember, ReadMemberWriteAdmin
from medcot.imports.service import import_batch_submit, import_preview
from medcot.models import Item, Project
from medcot.services import project_create


class TokenView(ObtainAuthToken):
    """Exchange a username and password for the user's API token.

    Failed attempts count toward the login throttle (`medcot.login_throttle`): after too many,
    the answer is 429 until the window passes.
    """

    # The endpoint takes credentials, so no session (and no CSRF token) plays a part in it.
    authentication_classes: list = []

    @extend_schema(
        responses={
            200: inline_serializer("Token", {"token": serializers.CharField()}),
            400: OpenApiResponse(ErrorSerializer, description="Wrong username or password"),
            429: OpenApiResponse(ErrorSerializer, description="Too many failed sign-ins"),
        },
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class ProjectList(generics.ListCreateAPIView):
    """Projects with their item counts. Any role reads; admins create."""

    permission_classes = [ReadMemberWriteAdmin]
    serializer_class = s.ProjectSerializer
    pagination_class = Cursor

    def get_queryset(self):
        return selectors.project_list_with_counts()

    @extend_schema(responses={200: s.ProjectSerializer(many=True), **READ_ERRORS})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(responses={201: s.ProjectSerializer, **ERRORS})
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        slug = data.pop("slug", "") or slugify(data["name"])[:80] or "project"
        # The serializer checks a given slug; one derived from the name is checked here so a
        # clash is a 400, not an IntegrityError.
        if Project.objects.filter(slug=slug).exists():
            return invalid({"slug": ["A project with this slug already exists."]})
        project = project_create(name=data.pop("name"), slug=slug, actor=request.user, **data)
        project = selectors.project_list_with_counts().get(pk=project.pk)
        return Response(
            s.ProjectSerializer(project).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api-project", kwargs={"slug": project.slug})},
        )


class ProjectDetail(generics.GenericAPIView):
    permission_classes = [IsMember]
    serializer_class = s.ProjectDetailSerializer

    @extend_schema(responses={200: s.ProjectDetailSerializer, **READ_ERRORS})
    def get(self, request, slug: str):
        project = rules.project_get_for_user(user=request.user, slug=slug)
        project = selectors.project_list_with_counts().get(pk=project.pk)
        project.status_counts = selectors.project_status_counts(project=project)
        return Response(self.get_serializer(project).data)


class ImportList(generics.ListAPIView):
    """Seed imports of a project, newest first. Admins only."""

    permission_classes = [IsAdminRole]
    serializer_class = s.ImportBatchSummarySerializer
    pagination_class = Cursor
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        project = rules.project_get_for_admin(user=self.request.user, slug=self.kwargs["slug"])
        return project.imports.defer("content", "errors").select_related("created_by")

    @extend_schema(responses={200: s.ImportBatchSummarySerializer(many=True), **READ_ERRORS})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=s.ImportUploadSerializer,
        parameters=[
            OpenApiParameter(
                "wait",
                bool,
                description="Process the file in this request and answer with the report "
                "(for scripts); otherwise a worker processes it and the answer is pending.",
            ),
            OpenApiParameter(
                "dry_run",
                bool,
                description="Only preview: the layout found, the mapping in use, the first five "
                "records as they would be stored and the problems (200); nothing is written.",
            ),
        ],
        responses={
            201: s.ImportBatchSerializer,
            200: s.ImportPreviewSerializer,
            413: OpenApiResponse(ErrorSerializer, description="File too large"),
            **ERRORS,
        },
    )
    def post(self, request, slug: str):
        project = rules.project_get_for_admin(user=request.user, slug=slug)
        # Refuse an oversized upload from its declared length, before the body is read.
        limit = settings.MEDCOT_MAX_UPLOAD_MB * 1024 * 1024
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise PayloadTooLarge(
                f"The upload is {declared // (1024 * 1024)} MB; "
                f"the limit is {settings.MEDCOT_MAX_UPLOAD_MB} MB (MEDCOT_MAX_UPLOAD_MB)."
            )
        upload = s.ImportUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        file = upload.validated_data["file"]
        options = upload.import_options()
        if request.query_params.get("dry_run", "").lower() in {"1", "true", "yes"}:
            preview = import_preview(data=file.read(), options=options, project=project)
            return Response(s.ImportPreviewSerializer(preview.as_dict()).data)
        batch = import_batch_submit(
            project=project,
            data=file.read(),
            file_name=file.name,
            options=options,
            actor=request.user,
            wait=request.query_params.get("wait", "").lower() in {"1", "true", "yes"},
        )
        return Response(
            s.ImportBatchSerializer(batch).data,
            status=status.HTTP_201_CREATED,
            headers={
                "Location": reverse("api-import", kwargs={"slug": project.slug, "pk": batch.pk})
            },
        )


class ImportDetail(generics.GenericAPIView):
    """One import's state and its per-line report."""

    permission_classes = [IsAdminRole]
    serializer_class = s.ImportBatchSerializer

    @extend_schema(responses={200: s.ImportBatchSerializer, **READ_ERRORS})
    def get(self, request, slug: str, pk: int):
        project = rules.project_get_for_admin(user=request.user, slug=slug)
        batch = rules.import_batch_get_for_user(user=request.user, project=project, pk=pk)
        return Response(self.get_serializer(batch).data)


class ItemList(generics.ListAPIView):
    """A project's items, filtered by status, pipeline stage, specialty, language or a search.

    Admins see every item; reviewers and experts see the items they hold.
    """

    permission_classes = [IsMember]
    serializer_class = s.ItemSerializer
    pagination_class = CursorById

    def get_queryset(self):
        project = rules.project_get_for_user(user=self.request.user, slug=self.kwargs["slug"])
        filters = s.ItemFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        items = selectors.item_list(
            project=project,
            status=f.get("status", ""),
            stage=f.get("stage", ""),
            language=f.get("language", ""),
            specialty=f.get("specialty", ""),
            query=f.get("q", "").strip(),
        )
        if rules.is_admin(self.request.user):
            return items
        return rules.items_visible_to(user=self.request.user, items=items)

    @extend_schema(
        parameters=[s.ItemFilterSerializer],
        responses={200: s.ItemSerializer(many=True), **ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ItemDetail(generics.GenericAPIView):
    """One item with its current content, every version and every event."""

    permission_classes = [IsMember]
    serializer_class = s.ItemDetailSerializer
    queryset = Item.objects.none()

    @extend_schema(responses={200: s.ItemDetailSerializer, **READ_ERRORS})
    def get(self, request, slug: str, pk: int):
        project = rules.project_get_for_user(user=request.user, slug=slug)
        item = rules.item_get_for_user(user=request.user, project=project, pk=pk)
        history = selectors.item_history(item=item)
        item.history_versions = history["versions"]
        item.history_events = history["events"]
        return Response(self.get_serializer(item).data)


# Exempt: it changes nothing, and a POST to a wrong address deserves the API's 404, not the
# CSRF middleware's HTML page.
@csrf_exempt
def not_found(request, *args, **kwargs):
    return JsonResponse(
        error_body("not_found", _("No API endpoint at this address; see /api/docs/.")), status=404
    )
