from django.contrib.auth.decorators import login_required
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from review.api import (
    audit_views,
    endpoint_views,
    panel_views,
    pipeline_views,
    quality_views,
    review_views,
    views,
    workflow_views,
)
from review.api.permissions import IsMember

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("projects/", views.ProjectList.as_view(), name="api-projects"),
    path("projects/<slug:slug>/", views.ProjectDetail.as_view(), name="api-project"),
    path("projects/<slug:slug>/imports/", views.ImportList.as_view(), name="api-imports"),
    path("projects/<slug:slug>/imports/<int:pk>/", views.ImportDetail.as_view(), name="api-import"),
    path("projects/<slug:slug>/items/", views.ItemList.as_view(), name="api-items"),
    path("projects/<slug:slug>/items/<int:pk>/", views.ItemDetail.as_view(), name="api-item"),
    path(
        "projects/<slug:slug>/items/<int:pk>/reviews/",
        review_views.ItemReviews.as_view(),
        name="api-item-reviews",
    ),
    path(
        "projects/<slug:slug>/items/<int:pk>/panel/",
        review_views.PanelAssign.as_view(),
        name="api-item-panel",
    ),
    path(
        "projects/<slug:slug>/items/<int:pk>/adjudication/",
        review_views.Adjudicate.as_view(),
        name="api-item-adjudication",
    ),
    path("llm/endpoints/", endpoint_views.EndpointList.as_view(), name="api-endpoints"),
    path("llm/endpoints/<int:pk>/", endpoint_views.EndpointDetail.as_view(), name="api-endpoint"),
    path(
        "llm/endpoints/<int:pk>/test/",
        endpoint_views.EndpointTest.as_view(),
        name="api-endpoint-test",
    ),
    path("projects/<slug:slug>/runs/", pipeline_views.RunList.as_view(), name="api-runs"),
    path("projects/<slug:slug>/runs/<int:pk>/", pipeline_views.RunDetail.as_view(), name="api-run"),
    *[
        path(
            f"projects/<slug:slug>/runs/<int:pk>/{action}/",
            pipeline_views.RunControl.as_view(action_name=action),
            name=f"api-run-{action}",
        )
        for action in pipeline_views.RUN_CONTROLS
    ],
    path(
        "projects/<slug:slug>/runs/<int:pk>/calls/",
        audit_views.RunCalls.as_view(),
        name="api-run-calls",
    ),
    path(
        "projects/<slug:slug>/releases/",
        pipeline_views.ReleaseList.as_view(),
        name="api-releases",
    ),
    path(
        "projects/<slug:slug>/releases/<str:version>/",
        pipeline_views.ReleaseDetail.as_view(),
        name="api-release",
    ),
    path(
        "projects/<slug:slug>/releases/<str:version>/download/",
        pipeline_views.ReleaseDownload.as_view(),
        name="api-release-download",
    ),
    path(
        "review/first-pass/next/",
        workflow_views.FirstPassNext.as_view(),
        name="api-first-pass-next",
    ),
    path(
        "review/items/<int:pk>/first-pass/",
        workflow_views.FirstPassSubmit.as_view(),
        name="api-first-pass-submit",
    ),
    path(
        "review/items/<int:pk>/scores/",
        panel_views.PanelScores.as_view(),
        name="api-panel-scores",
    ),
    path(
        "review/items/<int:pk>/consensus/",
        workflow_views.ConsensusVote.as_view(),
        name="api-consensus-vote",
    ),
    path(
        "review/first-pass/undo/",
        workflow_views.FirstPassUndo.as_view(),
        name="api-first-pass-undo",
    ),
    path(
        "review/items/<int:pk>/first-pass/skip/",
        workflow_views.FirstPassSkip.as_view(),
        name="api-first-pass-skip",
    ),
    path(
        "review/items/<int:pk>/revision/",
        panel_views.PanelRevision.as_view(),
        name="api-panel-revision",
    ),
    path(
        "review/items/<int:pk>/regeneration/",
        panel_views.PanelRegeneration.as_view(),
        name="api-panel-regeneration",
    ),
    path(
        "projects/<slug:slug>/releases/<str:version>/diff/",
        audit_views.ReleaseDiff.as_view(),
        name="api-release-diff",
    ),
    path(
        "projects/<slug:slug>/quality/reliability/",
        quality_views.Reliability.as_view(),
        name="api-quality-reliability",
    ),
    path(
        "projects/<slug:slug>/quality/controls/",
        quality_views.ControlList.as_view(),
        name="api-quality-controls",
    ),
    path(
        "projects/<slug:slug>/quality/alerts/",
        quality_views.AlertList.as_view(),
        name="api-quality-alerts",
    ),
    path(
        "projects/<slug:slug>/quality/alerts/<int:pk>/second-opinion/",
        quality_views.AlertSecondOpinion.as_view(),
        name="api-quality-second-opinion",
    ),
    path(
        "projects/<slug:slug>/quality/posteriors/",
        quality_views.PosteriorList.as_view(),
        name="api-quality-posteriors",
    ),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[IsMember]), name="api-schema"),
    # A browser page: anonymous visitors go to the login page like everywhere else.
    path(
        "docs/",
        login_required(
            SpectacularSwaggerSplitView.as_view(
                url_name="api-schema",
                template_name="api/swagger_ui.html",
                permission_classes=[IsMember],
            )
        ),
        name="api-docs",
    ),
    # Anything else under /api/ is a JSON 404 in the API's error shape, not the HTML page.
    # Any character, so a path with an encoded newline (fuzzers send them) is caught here too.
    re_path(r"^[\s\S]*$", views.not_found, name="api-not-found"),
]
