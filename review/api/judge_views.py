"""API of the machine judge: its calibration per project and judge, the project's judge
settings (admins), and its second opinion on an item with feedback on its rationales.

The second opinion answers 404 until the caller has given their own verdict on the item, the
same answer as for an item the judge never scored, so nothing of the judge's opinion can
anchor a person before their own verdict. Every rule lives in `review.judge.services`."""

from __future__ import annotations

from dataclasses import asdict

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from generation.public import JudgeScore
from medcot.api.errors import ERRORS, READ_ERRORS, valid_input
from medcot.api.permissions import IsAdminRole, IsMember
from medcot.models import Item
from medcot.permissions import project_get_for_admin
from medcot.roles import EXPERT, has_role
from review.api.errors import review_refusals
from review.judge import services
from review.models import JudgeFeedback, RubricDimension


class JudgeSettingsSerializer(serializers.Serializer):
    kappa_threshold = serializers.FloatField(min_value=-1.0, max_value=1.0)
    min_items = serializers.IntegerField(min_value=2, max_value=1_000_000)
    order_queues = serializers.BooleanField()
    second_review_on_zero = serializers.BooleanField()


class JudgeFeedbackSerializer(serializers.Serializer):
    dimension = serializers.ChoiceField(choices=RubricDimension.values)
    verdict = serializers.ChoiceField(choices=JudgeFeedback.Verdict.values)


class JudgeOpinionRowSerializer(serializers.Serializer):
    dimension = serializers.CharField()
    judge = serializers.IntegerField(help_text="The judge's machine score, 0-2.")
    mine = serializers.IntegerField(
        allow_null=True, help_text="Your score (a first-pass verdict as 0/1)."
    )
    differs = serializers.BooleanField()
    rationale = serializers.CharField()
    feedback = serializers.CharField(allow_null=True)


class JudgeOpinionSerializer(serializers.Serializer):
    judge_score = serializers.IntegerField()
    model = serializers.CharField()
    profile = serializers.CharField()
    prompt_version = serializers.CharField()
    machine_scores = serializers.BooleanField(help_text="Always true: never a human verdict.")
    first_wrong_step = serializers.IntegerField(allow_null=True)
    answer = serializers.CharField()
    dimensions = JudgeOpinionRowSerializer(many=True)


def _stat(statistic) -> dict:
    return asdict(statistic)


def calibration_payload(project, judge: dict | None) -> dict:
    settings = services.judge_settings_get(project=project)
    routing = services.judge_routing(project=project)
    body = {
        "settings": {
            "kappa_threshold": settings.kappa_threshold,
            "min_items": settings.min_items,
            "order_queues": settings.order_queues,
            "second_review_on_zero": settings.second_review_on_zero,
        },
        "in_force": {
            "order_queues": routing.order_queues,
            "second_review_on_zero": routing.second_review_on_zero,
        },
        "judge": None,
        "dimensions": [],
    }
    if judge is None:
        return body
    result = services.calibration_for(project=project, judge=judge["key"])
    body["judge"] = {
        "profile": judge["profile"],
        "profile_id": judge["key"].profile_id,
        "prompt_version_id": judge["key"].prompt_version_id,
        "model": judge["model"],
        "prompt": judge["prompt"],
        "items_judged": result.n_judged,
    }
    body["dimensions"] = [
        {
            "dimension": row.dimension,
            "n_items": row.n_items,
            "weighted_kappa": _stat(row.kappa),
            "icc_2_1": _stat(row.icc),
            "confusion": row.confusion,
            "trusted": row.trusted,
        }
        for row in result.dimensions
    ]
    body["first_pass"] = [
        {"criterion": r.criterion, "kappa": _stat(r.kappa), "agreement": _stat(r.agreement)}
        for r in result.first_pass
    ]
    body["first_wrong_step"] = {
        "n": result.steps.n,
        "exact": _stat(result.steps.exact),
        "flagged_kappa": _stat(result.steps.flagged_kappa),
    }
    body["feedback"] = result.feedback
    return body


class JudgeCalibration(generics.GenericAPIView):
    """The calibration of a judge (an LLM profile with one prompt version) against the
    experts of a project: per dimension the quadratic weighted κ and ICC(2,1) with 95 %
    intervals, the confusion matrix, n and whether it is trusted; first-pass and first-wrong-
    step agreement. Without `profile` and `prompt_version` the newest judge is shown."""

    permission_classes = [IsAdminRole]
    serializer_class = JudgeSettingsSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("profile", int, required=False),
            OpenApiParameter("prompt_version", int, required=False),
        ],
        responses={200: dict, **READ_ERRORS},
    )
    def get(self, request, slug: str):
        project = project_get_for_admin(user=request.user, slug=slug)
        judges = services.judges_of_project(project=project)
        judge = judges[0] if judges else None
        profile, prompt = (
            request.query_params.get("profile"),
            request.query_params.get("prompt_version"),
        )
        if profile or prompt:
            judge = next(
                (
                    j
                    for j in judges
                    if str(j["key"].profile_id) == profile
                    and str(j["key"].prompt_version_id) == prompt
                ),
                None,
            )
            if judge is None:
                raise Http404
        return Response(calibration_payload(project, judge))


class JudgeSettingsView(generics.GenericAPIView):
    """A project's judge settings: the trust threshold and minimum items, and the uses (queue
    order by judge risk, a second first-pass reviewer on a 0 for medical correctness), each
    off by default and in force only on trusted dimensions."""

    permission_classes = [IsAdminRole]
    serializer_class = JudgeSettingsSerializer

    @extend_schema(responses={200: JudgeSettingsSerializer, **READ_ERRORS})
    def get(self, request, slug: str):
        project = project_get_for_admin(user=request.user, slug=slug)
        return Response(JudgeSettingsSerializer(services.judge_settings_get(project=project)).data)

    @extend_schema(
        request=JudgeSettingsSerializer, responses={200: JudgeSettingsSerializer, **ERRORS}
    )
    def put(self, request, slug: str):
        project = project_get_for_admin(user=request.user, slug=slug)
        data = valid_input(JudgeSettingsSerializer, request)
        with review_refusals():
            saved = services.judge_settings_update(actor=request.user, project=project, **data)
        return Response(JudgeSettingsSerializer(saved).data)


def _opinion_or_404(request, pk: int):
    item = get_object_or_404(Item, pk=pk)
    opinion = services.second_opinion_for(user=request.user, item=item)
    if opinion is None:
        raise Http404
    return item, opinion


class ItemJudgeOpinion(generics.GenericAPIView):
    """The machine judge's second opinion on an item, beside your own verdict, with the
    dimensions where you differ marked. 404 until you have given your own verdict."""

    permission_classes = [IsMember]
    serializer_class = JudgeOpinionSerializer
    queryset = Item.objects.none()

    @extend_schema(responses={200: JudgeOpinionSerializer, **READ_ERRORS})
    def get(self, request, pk: int):
        _item, opinion = _opinion_or_404(request, pk)
        return Response(JudgeOpinionSerializer(services.judge_opinion_payload(opinion)).data)


class ItemJudgeFeedback(generics.GenericAPIView):
    """Mark the judge's rationale on one dimension helpful or wrong (experts, after their own
    verdict; once per dimension)."""

    permission_classes = [IsMember]
    serializer_class = JudgeFeedbackSerializer
    queryset = Item.objects.none()

    @extend_schema(
        request=JudgeFeedbackSerializer, responses={201: JudgeOpinionSerializer, **ERRORS}
    )
    def post(self, request, pk: int):
        if not has_role(request.user, EXPERT):
            raise PermissionDenied
        item, opinion = _opinion_or_404(request, pk)
        data = valid_input(JudgeFeedbackSerializer, request)
        with review_refusals():
            services.judge_feedback_record(
                actor=request.user,
                judge_score=JudgeScore.objects.get(pk=opinion.score.pk),
                dimension=data["dimension"],
                verdict=data["verdict"],
            )
        opinion = services.second_opinion_for(user=request.user, item=item)
        return Response(
            JudgeOpinionSerializer(services.judge_opinion_payload(opinion)).data,
            status=status.HTTP_201_CREATED,
        )
