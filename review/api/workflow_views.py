"""API writes of the first-pass and consensus queues: claim a first-pass item, submit, undo or
skip a verdict, vote at consensus. Each view checks access with the same selector as the
browser view and leaves every rule to the review services (panel writes: `panel_views`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from medcot import permissions as rules
from medcot.api import serializers as core_s
from medcot.api.errors import ERRORS, READ_ERRORS, valid_input
from medcot.api.permissions import IsMember
from medcot.models import OPTION_LABELS, Item
from review import selectors
from review.api.errors import review_refusals
from review.models import Stage
from review.quality.controls import control_status_shown
from review.services.common import ReviewError
from review.services.consensus import consensus_vote
from review.services.first_pass import (
    ContentFix,
    NotHeld,
    first_pass_apply_due,
    first_pass_item_get,
    first_pass_skip,
    first_pass_submit,
    first_pass_undo,
    first_pass_undoable,
)
from review.services.queue import queue_check_role, queue_next

# Item ids are BigAutoField keys; a larger number is a 400, not an overflow in SQL.
ITEM_ID_MAX = 2**63 - 1
# The browser remembers this many skipped items per person; the API takes as many back.
EXCLUDE_MAX = 200
# Undo names no item, so there is nothing to be missing: no 404.
UNDO_ERRORS = {code: answer for code, answer in ERRORS.items() if code != 404}
UNDOABLE_ERRORS = {code: answer for code, answer in READ_ERRORS.items() if code != 404}

# --- Input ---------------------------------------------------------------------------------


class FirstPassNextSerializer(serializers.Serializer):
    project = serializers.SlugField(required=False, help_text="Only claim from this project.")
    exclude = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=ITEM_ID_MAX),
        required=False,
        default=list,
        max_length=EXCLUDE_MAX,
        help_text="Item ids not to hand out (the ones you skipped). When only these are left "
        "the answer is empty; ask without them to be offered them again.",
    )


class ContentFixSerializer(serializers.Serializer):
    stem = serializers.CharField(max_length=20000)
    options = serializers.DictField(child=serializers.CharField(allow_blank=True, max_length=5000))
    answer = serializers.ChoiceField(choices=list(OPTION_LABELS))
    cot = serializers.CharField(max_length=50000, allow_blank=True)

    def validate_options(self, value: dict) -> dict:
        unknown = sorted(set(value) - set(OPTION_LABELS))
        if unknown:
            raise serializers.ValidationError(
                _("Unknown option labels: %(labels)s") % {"labels": ", ".join(unknown)}
            )
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
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=2_147_483_647,
        help_text="Seconds the item was on screen; when left out, the time since it was claimed.",
    )
    confirm_mismatch = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Pass although the chain of thought concludes on another option than the key "
        "(refused with code confirm_mismatch without it).",
    )
    confirm_fast = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Pass sooner than the project's min_pass_seconds (refused with code "
        "confirm_fast without it).",
    )


class ConsensusVoteInputSerializer(serializers.Serializer):
    answer = serializers.ChoiceField(choices=list(OPTION_LABELS))
    approve_phrasing = serializers.BooleanField()
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)
    confirm_mismatch = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Agree with a key the chain of thought does not conclude on.",
    )


# --- Output --------------------------------------------------------------------------------


class ClaimedSerializer(serializers.Serializer):
    item = core_s.ItemSerializer(allow_null=True)
    following = core_s.ItemSerializer(allow_null=True)


class FirstPassReviewOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item = serializers.IntegerField(source="item_id")
    version = serializers.IntegerField(source="version.number")
    outcome = serializers.CharField()
    state = serializers.CharField()
    reason = serializers.CharField()
    effective_at = serializers.DateTimeField()
    seconds_on_item = serializers.IntegerField()
    confirmations = serializers.ListField(
        child=serializers.CharField(),
        help_text='What the reviewer confirmed to pass: "mismatch", "fast".',
    )
    cot_concluded = serializers.CharField(
        help_text="The option the CoT concluded on when reviewed; empty when none."
    )
    item_status = serializers.CharField()


class UndoableSerializer(serializers.Serializer):
    undoable = FirstPassReviewOutSerializer(allow_null=True)


class ConsensusVoteOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item = serializers.IntegerField(source="item_id")
    version = serializers.IntegerField(source="version.number")
    answer = serializers.CharField()
    approve_phrasing = serializers.BooleanField()
    item_status = serializers.CharField()


# --- Shared --------------------------------------------------------------------------------


def answer_with_status(serializer_class, made, *, item: Item, code: int = 201) -> Response:
    """Present what a service made, with the item's status after it (the write may have moved
    the item on: a verdict without an undo window, the vote that settles consensus)."""
    item.refresh_from_db(fields=["status"])
    person = getattr(made, "reviewer_id", None) or getattr(made, "expert_id", None)
    # A control reads as a real item would after the same answer (review/quality/controls.py).
    made.item_status = control_status_shown(item_id=item.pk, reviewer=person) or item.status
    return Response(serializer_class(made).data, status=code)


@contextmanager
def confirmations_needed() -> Iterator[None]:
    """Like `review_refusals`, and a refusal for want of a confirmation also names it in
    `details.confirm` ("confirm_mismatch", "confirm_fast"): the field to set to go ahead."""
    try:
        yield
    except ReviewError as exc:
        details: dict = {"non_field_errors": exc.messages}
        if str(exc.code or "").startswith("confirm_"):
            details["confirm"] = [exc.code]
        raise exceptions.ValidationError(details) from exc


def _check_first_pass_role(user) -> None:
    try:
        queue_check_role(user=user, stage=Stage.FIRST_REVIEW)
    except ReviewError as exc:
        raise PermissionDenied(exc.messages[0]) from exc


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
        data = valid_input(FirstPassNextSerializer, request)
        _check_first_pass_role(request.user)
        project_id = None
        if data.get("project"):
            project_id = rules.project_get_for_user(user=request.user, slug=data["project"]).pk
        # Verdicts past their undo window take effect first, as on the browser's queue page.
        first_pass_apply_due(limit=50)
        current, following = queue_next(
            user=request.user,
            stage=Stage.FIRST_REVIEW,
            project_id=project_id,
            exclude_ids=data["exclude"],
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
        with review_refusals():
            item = first_pass_item_get(user=request.user, pk=pk)
        data = valid_input(FirstPassSubmitSerializer, request)
        given = data.get("fix")
        fix = None
        if given is not None:
            fix = ContentFix(
                stem=given["stem"],
                options=given["options"],
                answer=given["answer"],
                cot=given["cot"],
            )
        with confirmations_needed():
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
                confirm_mismatch=data["confirm_mismatch"],
                confirm_fast=data["confirm_fast"],
            )
        return answer_with_status(FirstPassReviewOutSerializer, review, item=item)


class FirstPassUndo(generics.GenericAPIView):
    """Take back your last first-pass verdict while its undo window lasts (GET: which one that
    would be). The item is yours again, first in line on `first-pass/next/`."""

    permission_classes = [IsMember]

    @extend_schema(responses={200: UndoableSerializer, **UNDOABLE_ERRORS})
    def get(self, request):
        _check_first_pass_role(request.user)
        review = first_pass_undoable(reviewer=request.user)
        if review is not None:
            review.item_status = review.item.status
        return Response(UndoableSerializer({"undoable": review}).data)

    @extend_schema(request=None, responses={200: FirstPassReviewOutSerializer, **UNDO_ERRORS})
    def post(self, request):
        _check_first_pass_role(request.user)
        with review_refusals():
            review = first_pass_undo(reviewer=request.user)
        return answer_with_status(
            FirstPassReviewOutSerializer, review, item=review.item, code=status.HTTP_200_OK
        )


class FirstPassSkip(generics.GenericAPIView):
    """Give a first-pass item you hold back to the queue, unjudged. Pass its id in `exclude`
    to `first-pass/next/` so it is not handed straight back to you."""

    permission_classes = [IsMember]
    # Only so the schema types the path's item id as an integer.
    queryset = Item.objects.none()

    @extend_schema(request=None, responses={204: None, **ERRORS})
    def post(self, request, pk: int):
        with review_refusals():
            try:
                first_pass_skip(user=request.user, pk=pk)
            except NotHeld as exc:
                raise PermissionDenied(" ".join(exc.messages)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


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
        data = valid_input(ConsensusVoteInputSerializer, request)
        with confirmations_needed():
            vote = consensus_vote(
                item=item,
                expert=request.user,
                answer=data["answer"],
                approve_phrasing=data["approve_phrasing"],
                comment=data["comment"],
                confirm_mismatch=data["confirm_mismatch"],
            )
        return answer_with_status(ConsensusVoteOutSerializer, vote, item=item)
