"""API views over the review trail of an item and panel assignment. Admins only: experts score
blind in the browser, so the API gives nobody else these rows."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from medcot import permissions as rules
from review import selectors as review_selectors
from review.api import serializers as s
from review.api.permissions import IsAdminRole
from review.api.views import ERRORS, READ_ERRORS, _invalid
from review.models import RubricDimension
from review.services.common import ReviewError
from review.services.panels import panel_assign


def _item(request, slug: str, pk: int):
    project = rules.project_get_for_admin(user=request.user, slug=slug)
    return rules.item_get_for_user(user=request.user, project=project, pk=pk)


def _reviews(item) -> dict:
    history = review_selectors.item_full_history(item=item)
    dimensions = [d.value for d in RubricDimension]
    for row in history["decisions"]:
        row["scores"] = dict(zip(dimensions, row["scores"], strict=True))
    return s.ItemReviewsSerializer(history).data


class ItemReviews(generics.GenericAPIView):
    """An item's first-pass reviews, panel, rubric scores, consensus votes and adjudications."""

    permission_classes = [IsAdminRole]
    serializer_class = s.ItemReviewsSerializer

    @extend_schema(responses={200: s.ItemReviewsSerializer, **READ_ERRORS})
    def get(self, request, slug: str, pk: int):
        return Response(_reviews(_item(request, slug, pk)))


class PanelAssign(generics.GenericAPIView):
    """Seat an expert panel on an item waiting for one (status `panel`)."""

    permission_classes = [IsAdminRole]
    serializer_class = s.PanelAssignSerializer

    @extend_schema(request=s.PanelAssignSerializer, responses={201: s.PanelSerializer, **ERRORS})
    def post(self, request, slug: str, pk: int):
        item = _item(request, slug, pk)
        form = s.PanelAssignSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        names = form.validated_data["experts"]
        experts = list(get_user_model().objects.filter(username__in=names))
        missing = sorted(set(names) - {e.get_username() for e in experts})
        if missing:
            return _invalid({"experts": [f"No such user: {', '.join(missing)}"]})
        try:
            panel = panel_assign(item=item, experts=experts, actor=request.user)
        except ReviewError as exc:
            return _invalid({"experts": exc.messages})
        return Response(s.PanelSerializer(panel).data, status=status.HTTP_201_CREATED)
