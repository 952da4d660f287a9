"""API of review/quality (admins): reviewer reliability, control items, alerts with the
second-opinion action, and the posterior of every judged item. Each view calls the same
selector or service as the browser page."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from medcot.api.errors import ERRORS, READ_ERRORS, valid_input
from medcot.api.pagination import CursorById
from medcot.api.permissions import IsAdminRole
from medcot.models import Item, Project
from review.api.errors import review_refusals
from review.quality import selectors
from review.quality.controls import control_create_from_item, second_opinion_request
from review.quality.models import ControlItem, ReliabilityAlert, VerdictPosterior
from review.quality.views import EXPORT_COLUMNS


def _project(slug: str) -> Project:
    return get_object_or_404(Project, slug=slug)


class ReliabilityRowSerializer(serializers.Serializer):
    pseudonym = serializers.CharField(help_text="People are named by pseudonym only.")
    controls = serializers.IntegerField()
    controls_correct = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True)
    accuracy_low = serializers.FloatField(allow_null=True, help_text="Wilson 95 % interval.")
    accuracy_high = serializers.FloatField(allow_null=True)
    sensitivity = serializers.FloatField(allow_null=True, help_text="Dawid–Skene estimate.")
    specificity = serializers.FloatField(allow_null=True)
    agreement = serializers.FloatField(allow_null=True, help_text="With peers on the same version.")
    agreement_pairs = serializers.IntegerField()
    median_seconds = serializers.FloatField(allow_null=True)
    fast_share = serializers.FloatField(
        allow_null=True, help_text="Share of passes under the project's min_pass_seconds."
    )
    per_day = serializers.FloatField(allow_null=True, help_text="Verdicts per active day.")
    verdicts = serializers.IntegerField()
    alert = serializers.BooleanField()


class ReliabilitySerializer(serializers.Serializer):
    first_pass_kappa = serializers.FloatField(allow_null=True)
    first_pass_kappa_items = serializers.IntegerField()
    control_accuracy = serializers.FloatField(allow_null=True)
    control_answers = serializers.IntegerField()
    people = ReliabilityRowSerializer(many=True)


class ReliabilityQuerySerializer(serializers.Serializer):
    sort = serializers.ChoiceField(choices=list(selectors.SORT_KEYS), required=False)
    dir = serializers.ChoiceField(choices=["asc", "desc"], required=False)


class Reliability(generics.GenericAPIView):
    """Every person's reliability in the project, as on the reliability page."""

    permission_classes = [IsAdminRole]
    serializer_class = ReliabilitySerializer

    @extend_schema(
        parameters=[ReliabilityQuerySerializer], responses={200: ReliabilitySerializer, **ERRORS}
    )
    def get(self, request, slug: str):
        project = _project(slug)
        query = ReliabilityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.reliability_rows(
            project=project,
            sort=query.validated_data.get("sort", "name"),
            descending=query.validated_data.get("dir") == "desc",
        )
        summary = selectors.quality_summary(project=project)
        body = {
            "first_pass_kappa": summary["first_pass_kappa"].value,
            "first_pass_kappa_items": summary["first_pass_kappa"].n_items,
            "control_accuracy": summary["control_accuracy"],
            "control_answers": summary["control_answers"],
            "people": [{c: row[c] for c in [*EXPORT_COLUMNS, "alert"]} for row in rows],
        }
        return Response(ReliabilitySerializer(body).data)


class ControlSerializer(serializers.ModelSerializer):
    item = serializers.IntegerField(source="item_id", read_only=True)
    source_item = serializers.IntegerField(source="source_item_id", read_only=True)
    answers = serializers.IntegerField(source="answers.count", read_only=True)

    class Meta:
        model = ControlItem
        fields = [
            "id",
            "item",
            "source_item",
            "source",
            "stage",
            "expected_valid",
            "expected_answer",
            "active",
            "answers",
            "created_at",
        ]
        read_only_fields = fields


class ControlCreateSerializer(serializers.Serializer):
    item = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    stage = serializers.ChoiceField(choices=["first_review", "consensus"], default="first_review")
    expected_valid = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="The known verdict; by default that of the item's status (approved: valid, "
        "discarded: not valid).",
    )


class ControlList(generics.ListAPIView):
    """The project's control items; POST makes a reviewed item a control."""

    permission_classes = [IsAdminRole]
    serializer_class = ControlSerializer
    pagination_class = CursorById

    @extend_schema(responses={200: ControlSerializer(many=True), **ERRORS})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return ControlItem.objects.filter(project=_project(self.kwargs["slug"]))

    @extend_schema(request=ControlCreateSerializer, responses={201: ControlSerializer, **ERRORS})
    def post(self, request, slug: str):
        project = _project(slug)
        data = valid_input(ControlCreateSerializer, request)
        item = get_object_or_404(Item, pk=data["item"], project=project)
        with review_refusals():
            control = control_create_from_item(
                admin=request.user,
                item=item,
                stage=data["stage"],
                expected_valid=data["expected_valid"],
            )
        return Response(ControlSerializer(control).data, status=201)


class AlertSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.medcot_profile.pseudonym", read_only=True)

    class Meta:
        model = ReliabilityAlert
        fields = ["id", "reviewer", "accuracy", "n_controls", "created_at", "second_opinion_at"]
        read_only_fields = fields


class AlertList(generics.ListAPIView):
    """Open alerts: people whose control accuracy is below the project's threshold."""

    permission_classes = [IsAdminRole]
    serializer_class = AlertSerializer
    pagination_class = None

    def get_queryset(self):
        return selectors.alerts_open(project=_project(self.kwargs["slug"]))


class AlertSecondOpinion(generics.GenericAPIView):
    """Ask a second opinion on every first-pass verdict the person gives while the alert is
    open (the same action as the reliability page's button). Idempotent."""

    permission_classes = [IsAdminRole]
    serializer_class = AlertSerializer

    @extend_schema(request=None, responses={200: AlertSerializer, **ERRORS})
    def post(self, request, slug: str, pk: int):
        alert = get_object_or_404(ReliabilityAlert, pk=pk, project=_project(slug))
        with review_refusals():
            alert = second_opinion_request(alert=alert, admin=request.user)
        return Response(AlertSerializer(alert).data)


class PosteriorSerializer(serializers.ModelSerializer):
    item = serializers.IntegerField(source="item_id")
    version = serializers.IntegerField(source="version.number")

    class Meta:
        model = VerdictPosterior
        fields = ["item", "version", "p_valid", "n_verdicts", "fitted_at"]
        read_only_fields = fields


class PosteriorList(generics.ListAPIView):
    """The aggregated verdict of every judged item: P(valid) of its current version from
    Dawid–Skene over every human verdict, and how many verdicts there were."""

    permission_classes = [IsAdminRole]
    serializer_class = PosteriorSerializer
    pagination_class = CursorById

    @extend_schema(responses={200: PosteriorSerializer(many=True), **READ_ERRORS})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return VerdictPosterior.objects.filter(
            item__project=_project(self.kwargs["slug"])
        ).select_related("version")
