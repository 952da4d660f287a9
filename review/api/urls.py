"""Review's API routes: an item's reviews, panels and adjudication, the review workflow
(first pass, scores, consensus) and releases (under /api/)."""

from django.urls import path

from review.api import panel_views, release_views, review_views, workflow_views

urlpatterns = [
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
    path(
        "projects/<slug:slug>/releases/",
        release_views.ReleaseList.as_view(),
        name="api-releases",
    ),
    path(
        "projects/<slug:slug>/releases/<str:version>/",
        release_views.ReleaseDetail.as_view(),
        name="api-release",
    ),
    path(
        "projects/<slug:slug>/releases/<str:version>/download/",
        release_views.ReleaseDownload.as_view(),
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
        release_views.ReleaseDiff.as_view(),
        name="api-release-diff",
    ),
]
