"""API views over the review trail of an item, panel assignment and adjudication. Admins only:
experts score blind in the browser, so the API gives nobody else these rows."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from medcot import permissions as rules
from medcot.api.errors import ERRORS, READ_ERRORS, invalid, valid_input
from medcot.api.permissions import IsAdminRole
from review import selectors as review_selectors
from review.api import serializers as s
from review.api.errors import review_refusals
from review.models import Adjudication, Panel, RubricDimension
from review.services.common import ReviewError
from review.services.panels import adjudication_decide, panel_assign


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
            return invalid({"experts": [f"No such user: {', '.join(missing)}"]})
        try:
            panel = panel_assign(item=item, experts=experts, actor=request.user)
        except ReviewError as exc:
            return invalid({"experts": exc.messages})
        return Response(s.PanelSerializer(panel).data, status=status.HTTP_201_CREATED)


class AdjudicateSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(
        choices=Adjudication.Outcome.values,
        help_text="accept: approve with the experts who accepted the current key (needs the "
        "consensus minimum of them); discard; new_round: send back to the panel; add_expert: "
        "seat `expert` on the panel.",
    )
    reason = serializers.CharField(max_length=4000, help_text="Why; kept with the decision.")
    expert = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=150,
        help_text="Username of the expert to add; required with add_expert.",
    )


class AdjudicationResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item = serializers.IntegerField(source="item_id")
    outcome = serializers.CharField()
    reason = serializers.CharField()
    expert = serializers.CharField(allow_null=True, help_text="The expert added, if any.")
    item_status = serializers.CharField()
    panel_state = serializers.CharField(allow_null=True)
    panel_round = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


class Adjudicate(generics.GenericAPIView):
    """Decide an item its panel could not agree on (panel state `adjudication`), or discard an
    item at consensus, always with a reason. Accepting still needs the consensus minimum of
    experts behind the current key: the admin picks a side, never overrules the gate."""

    permission_classes = [IsAdminRole]
    serializer_class = AdjudicateSerializer

    @extend_schema(
        request=AdjudicateSerializer, responses={201: AdjudicationResultSerializer, **ERRORS}
    )
    def post(self, request, slug: str, pk: int):
        item = _item(request, slug, pk)
        data = valid_input(AdjudicateSerializer, request)
        expert = None
        if data["expert"]:
            expert = get_user_model().objects.filter(username=data["expert"]).first()
            if expert is None:
                return invalid({"expert": [f"No such user: {data['expert']}"]})
        with review_refusals():
            record = adjudication_decide(
                item=item,
                admin=request.user,
                outcome=data["outcome"],
                reason=data["reason"],
                expert=expert,
            )
        item.refresh_from_db(fields=["status"])
        panel = Panel.objects.filter(item=item).first()
        record.item_status = item.status
        record.expert = expert.get_username() if "expert" in record.data else None
        record.panel_state = panel.state if panel else None
        record.panel_round = panel.round if panel else None
        return Response(AdjudicationResultSerializer(record).data, status=status.HTTP_201_CREATED)
