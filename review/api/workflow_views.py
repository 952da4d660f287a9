"""API writes of the review workflow: claim a first-pass item, submit a first-pass verdict,
score a panel item, vote at consensus. Each view checks access with the same selector as the
browser view and leaves every rule to the review services."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from medcot import permissions as rules
from medcot.models import OPTION_LABELS, Item
from review import selectors
from review.api import serializers as s
from review.api.permissions import IsMember
from review.api.views import ERRORS, _invalid
from review.models import Decision, RubricDimension, Stage
from review.services.common import ReviewError
from review.services.consensus import consensus_vote
from review.services.first_pass import ContentFix, first_pass_apply_due, first_pass_submit
from review.services.panels import panel_submit
from review.services.queue import queue_check_role, queue_next

# --- Input ---------------------------------------------------------------------------------


class FirstPassNextSerializer(serializers.Serializer):
    project = serializers.SlugField(required=False, help_text="Only claim from this project.")


class ContentFixSerializer(serializers.Serializer):
    stem = serializers.CharField(max_length=20000)
    options = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=5000))
    answer = serializers.ChoiceField(choices=list(OPTION_LABELS))
    cot = serializers.CharField(max_length=50000, allow_blank=True)

    def validate_options(self, value: dict) -> dict:
        unknown = sorted(set(value) - set(OPTION_LABELS))
        if unknown:
            raise serializers.ValidationError(f"Unknown option labels: {', '.join(unknown)}")
        return value


class FirstPassSubmitSerializer(serializers.Serializer):
    relevance = serializers.BooleanField()
    correctness = serializers.BooleanField()
    sufficiency = serializers.BooleanField()
    action = serializers.ChoiceField(choices=["pass", "fix", "discard"])
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)
    fix = ContentFixSerializer(required=False, help_text="The edited item; required with fix.")
    seconds_on_item = serializers.IntegerField(
        required=False, default=0, min_value=0, max_value=2_147_483_647
    )


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


class ConsensusVoteInputSerializer(serializers.Serializer):
    answer = serializers.ChoiceField(choices=list(OPTION_LABELS))
    approve_phrasing = serializers.BooleanField()
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)


# --- Output --------------------------------------------------------------------------------


class ClaimedSerializer(serializers.Serializer):
    item = s.ItemSerializer(allow_null=True)
    following = s.ItemSerializer(allow_null=True)


class FirstPassReviewOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item = serializers.IntegerField(source="item_id")
    version = serializers.IntegerField(source="version.number")
    outcome = serializers.CharField()
    state = serializers.CharField()
    reason = serializers.CharField()
    effective_at = serializers.DateTimeField()
    item_status = serializers.CharField()


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


class ConsensusVoteOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item = serializers.IntegerField(source="item_id")
    version = serializers.IntegerField(source="version.number")
    answer = serializers.CharField()
    approve_phrasing = serializers.BooleanField()
    item_status = serializers.CharField()


def _review_error(exc: ReviewError) -> Response:
    return _invalid({"non_field_errors": exc.messages})


# --- Views ---------------------------------------------------------------------------------


class FirstPassNext(generics.GenericAPIView):
    """Claim (lease) the caller's next first-pass item and the one after it.

    Calling again returns the same items while the leases last, like reloading the page.
    """

    permission_classes = [IsMember]
    serializer_class = FirstPassNextSerializer

    @extend_schema(
        request=FirstPassNextSerializer,
        responses={200: ClaimedSerializer, **ERRORS},
    )
    def post(self, request):
        form = FirstPassNextSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            queue_check_role(user=request.user, stage=Stage.FIRST_REVIEW)
        except ReviewError as exc:
            raise PermissionDenied(exc.messages[0]) from exc
        project_id = None
        if form.validated_data.get("project"):
            project_id = rules.project_get_for_user(
                user=request.user, slug=form.validated_data["project"]
            ).pk
        # Verdicts past their undo window take effect first, as on the browser's queue page.
        first_pass_apply_due(limit=50)
        current, following = queue_next(
            user=request.user, stage=Stage.FIRST_REVIEW, project_id=project_id
        )
        return Response(ClaimedSerializer({"item": current, "following": following}).data)


class FirstPassSubmit(generics.GenericAPIView):
    """Submit a first-pass verdict: pass, fix (with the edited item and a reason) or discard
    (with a reason). It takes effect after the undo window (`effective_at`)."""

    permission_classes = [IsMember]
    serializer_class = FirstPassSubmitSerializer
    # Only so the schema types the path's item id as an integer.
    queryset = Item.objects.none()

    @extend_schema(
        request=FirstPassSubmitSerializer,
        responses={201: FirstPassReviewOutSerializer, **ERRORS},
    )
    def post(self, request, pk: int):
        item = selectors.item_get_for_reviewer(user=request.user, pk=pk)
        form = FirstPassSubmitSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        fix = None
        if data.get("fix") is not None:
            given = data["fix"]
            fix = ContentFix(
                stem=given["stem"],
                options=given["options"],
                answer=given["answer"],
                cot=given["cot"],
            )
        try:
            review = first_pass_submit(
                item=item,
                reviewer=request.user,
                relevance=data["relevance"],
                correctness=data["correctness"],
                sufficiency=data["sufficiency"],
                action=data["action"],
                reason=data["reason"],
                comment=data["comment"],
                fix=fix,
                seconds_on_item=data["seconds_on_item"],
            )
        except ReviewError as exc:
            return _review_error(exc)
        item.refresh_from_db(fields=["status"])
        review.item_status = item.status
        return Response(FirstPassReviewOutSerializer(review).data, status=status.HTTP_201_CREATED)


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
        item, panel = selectors.item_get_for_panel_member(user=request.user, pk=pk)
        if not panel.memberships.filter(expert=request.user).exists():
            # Admins may look at any panel in the browser, but only its experts score.
            raise PermissionDenied("You are not on this item's panel.")
        form = RubricScoresSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
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
        except ReviewError as exc:
            return _review_error(exc)
        item.refresh_from_db(fields=["status"])
        panel.refresh_from_db()
        body = {
            "item": item.pk,
            "item_status": item.status,
            "panel_state": panel.state,
            "rounds": _my_rounds(panel=panel, user=request.user),
        }
        return Response(PanelScoreOutSerializer(body).data, status=status.HTTP_201_CREATED)


class ConsensusVote(generics.GenericAPIView):
    """Cast the caller's consensus vote (experts) on an item waiting for consensus."""

    permission_classes = [IsMember]
    serializer_class = ConsensusVoteInputSerializer
    # Only so the schema types the path's item id as an integer.
    queryset = Item.objects.none()

    @extend_schema(
        request=ConsensusVoteInputSerializer,
        responses={201: ConsensusVoteOutSerializer, **ERRORS},
    )
    def post(self, request, pk: int):
        item = selectors.item_get_for_consensus(user=request.user, pk=pk)
        form = ConsensusVoteInputSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        try:
            vote = consensus_vote(
                item=item,
                expert=request.user,
                answer=data["answer"],
                approve_phrasing=data["approve_phrasing"],
                comment=data["comment"],
            )
        except ReviewError as exc:
            return _review_error(exc)
        item.refresh_from_db(fields=["status"])
        vote.item_status = item.status
        return Response(ConsensusVoteOutSerializer(vote).data, status=status.HTTP_201_CREATED)
