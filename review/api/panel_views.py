"""API writes of an expert panel, for the experts who sit on it: score a round, revise the item
when the panel asked for a revision, or ask the model for a guided regeneration. Access goes
through the browser's selector; every rule stays in `review.services.panels`."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from medcot.api.errors import ERRORS, valid_input
from medcot.api.permissions import IsMember
from medcot.models import OPTION_LABELS, Item
from review import selectors
from review.api.errors import review_refusals
from review.models import Decision, RubricDimension
from review.services.panels import (
    panel_refresh,
    panel_request_regeneration,
    panel_revise,
    panel_submit,
)

# --- Input ---------------------------------------------------------------------------------


class RubricScoresSerializer(serializers.Serializer):
    scores = serializers.DictField(
        child=serializers.IntegerField(min_value=0, max_value=2),
        help_text=f"One score (0, 1 or 2) for each of: {', '.join(RubricDimension.values)}.",
    )
    decision = serializers.ChoiceField(choices=Decision.values)
    answer = serializers.ChoiceField(choices=list(OPTION_LABELS))
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)
    first_wrong_step = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=32_767
    )
    seconds_on_item = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=2_147_483_647
    )

    def validate_scores(self, value: dict) -> dict:
        if set(value) != set(RubricDimension.values):
            raise serializers.ValidationError(
                f"Score exactly these dimensions: {', '.join(RubricDimension.values)}."
            )
        return value


class PanelRevisionSerializer(serializers.Serializer):
    cot = serializers.CharField(max_length=50000, help_text="The revised chain of thought.")
    answer = serializers.ChoiceField(choices=list(OPTION_LABELS), help_text="The key.")
    reason = serializers.CharField(max_length=2000, help_text="What the revision changes and why.")
    stem = serializers.CharField(
        required=False, max_length=20000, help_text="A new question stem; unchanged if absent."
    )
    options = serializers.DictField(
        child=serializers.CharField(max_length=5000),
        required=False,
        help_text='Every option, {"A": …, "B": …, "C": …, "D": …, optional "E"}; unchanged '
        "if absent.",
    )

    def validate_options(self, value: dict) -> dict:
        # The whole set replaces the old one, so a missing option would be an empty one.
        unknown = sorted(set(value) - set(OPTION_LABELS))
        if unknown:
            raise serializers.ValidationError(
                _("Unknown option labels: %(labels)s") % {"labels": ", ".join(unknown)}
            )
        missing = [label for label in "ABCD" if label not in value]
        if missing:
            raise serializers.ValidationError(
                _("Options A to D are required; missing %(labels)s.") % {"labels": missing}
            )
        return value


class RegenerationSerializer(serializers.Serializer):
    guidance = serializers.CharField(
        max_length=4000, help_text="The panel's comments: what the model should change."
    )


# --- Output --------------------------------------------------------------------------------


class MyRoundSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    complete = serializers.BooleanField()
    submitted_count = serializers.IntegerField()
    expected_count = serializers.IntegerField()
    hidden_count = serializers.IntegerField()
    decisions = serializers.ListField(child=serializers.DictField())


class PanelScoreOutSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    item_status = serializers.CharField()
    panel_state = serializers.CharField()
    rounds = MyRoundSerializer(many=True)


class PanelStepSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    item_status = serializers.CharField()
    version = serializers.IntegerField(help_text="The item's current content version.")
    panel_state = serializers.CharField()
    round = serializers.IntegerField()


# --- Shared --------------------------------------------------------------------------------


def _panel_for_member(request, pk: int):
    """The item and panel, for one of the panel's experts only. Admins may look at any panel
    in the browser, but only its experts score and revise."""
    item, panel = selectors.item_get_for_panel_member(user=request.user, pk=pk)
    if not panel.memberships.filter(expert=request.user).exists():
        raise PermissionDenied(_("You are not on this item's panel."))
    # As on the browser's panel page: a guided regeneration that has arrived starts the next
    # round before anyone acts on the panel.
    return item, panel_refresh(item=item) or panel


def _my_rounds(*, panel, user) -> list[dict]:
    """The panel's rounds as `user` may see them (`panel_round_view` keeps scoring blind)."""
    view = selectors.panel_round_view(panel=panel, user=user)
    dimensions = list(RubricDimension.values)
    rounds = []
    for row in view["rounds"]:
        rounds.append(
            {
                "number": row["number"],
                "complete": row["complete"],
                "submitted_count": row["submitted_count"],
                "expected_count": row["expected_count"],
                "hidden_count": row["hidden_count"],
                "decisions": [
                    {
                        "expert": seen["decision"].expert.get_username(),
                        "mine": seen["mine"],
                        "decision": seen["decision"].decision,
                        "answer": seen["decision"].answer,
                        "scores": dict(zip(dimensions, seen["scores"], strict=True)),
                    }
                    for seen in row["visible"]
                ],
            }
        )
    return rounds


def _panel_step(item: Item, panel, *, code: int) -> Response:
    item.refresh_from_db(fields=["status", "current_version"])
    body = {
        "item": item.pk,
        "item_status": item.status,
        "version": item.current_version.number,
        "panel_state": panel.state,
        "round": panel.round,
    }
    return Response(PanelStepSerializer(body).data, status=code)


# --- Views ---------------------------------------------------------------------------------


class PanelScores(generics.GenericAPIView):
    """Submit the caller's rubric scores and decision for the current round of a panel they sit
    on. The answer shows other experts' scores only once the round is complete."""

    permission_classes = [IsMember]
    serializer_class = RubricScoresSerializer
    # Only so the schema types the path's item id as an integer.
    queryset = Item.objects.none()

    @extend_schema(
        request=RubricScoresSerializer,
        responses={201: PanelScoreOutSerializer, **ERRORS},
    )
    def post(self, request, pk: int):
        item, panel = _panel_for_member(request, pk)
        data = valid_input(RubricScoresSerializer, request)
        with review_refusals():
            panel_submit(
                item=item,
                expert=request.user,
                scores=data["scores"],
                decision=data["decision"],
                answer=data["answer"],
                comment=data["comment"],
                first_wrong_step=data.get("first_wrong_step"),
                seconds_on_item=data["seconds_on_item"],
            )
        item.refresh_from_db(fields=["status"])
        panel.refresh_from_db()
        body = {
            "item": item.pk,
            "item_status": item.status,
            "panel_state": panel.state,
            "rounds": _my_rounds(panel=panel, user=request.user),
        }
        return Response(PanelScoreOutSerializer(body).data, status=status.HTTP_201_CREATED)


class PanelRevision(generics.GenericAPIView):
    """Revise an item whose panel asked for a revision: a new content version by you (the CoT
    and key, optionally the stem and options), and a new scoring round on it."""

    permission_classes = [IsMember]
    serializer_class = PanelRevisionSerializer
    # Only so the schema types the path's item id as an integer.
    queryset = Item.objects.none()

    @extend_schema(request=PanelRevisionSerializer, responses={201: PanelStepSerializer, **ERRORS})
    def post(self, request, pk: int):
        item, _panel = _panel_for_member(request, pk)
        data = valid_input(PanelRevisionSerializer, request)
        with review_refusals():
            panel = panel_revise(
                item=item,
                expert=request.user,
                reason=data["reason"],
                cot=data["cot"],
                answer=data["answer"],
                stem=data.get("stem"),
                options=data.get("options"),
            )
        return _panel_step(item, panel, code=status.HTTP_201_CREATED)


class PanelRegeneration(generics.GenericAPIView):
    """Instead of editing, ask the model to rewrite the CoT following the panel's comments.
    The answer is 202: the next round starts once the new version has arrived."""

    permission_classes = [IsMember]
    serializer_class = RegenerationSerializer
    # Only so the schema types the path's item id as an integer.
    queryset = Item.objects.none()

    @extend_schema(request=RegenerationSerializer, responses={202: PanelStepSerializer, **ERRORS})
    def post(self, request, pk: int):
        item, _panel = _panel_for_member(request, pk)
        data = valid_input(RegenerationSerializer, request)
        with review_refusals():
            panel = panel_request_regeneration(
                item=item, expert=request.user, guidance=data["guidance"]
            )
        return _panel_step(item, panel, code=status.HTTP_202_ACCEPTED)
