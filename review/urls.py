from django.urls import include, path

from review import views

app_name = "review"

urlpatterns = [
    path("review/", views.my_queue, name="my_queue"),
    path("review/first-pass/", views.first_pass, name="first_pass"),
    path(
        "review/first-pass/<int:pk>/submit/", views.first_pass_submit_view, name="first_pass_submit"
    ),
    path("review/first-pass/<int:pk>/skip/", views.first_pass_skip_view, name="first_pass_skip"),
    path("review/first-pass/undo/", views.first_pass_undo_view, name="first_pass_undo"),
    path("review/consensus/", views.consensus, name="consensus"),
    path("review/consensus/<int:pk>/vote/", views.consensus_vote_view, name="consensus_vote"),
    path("review/consensus/<int:pk>/skip/", views.consensus_skip, name="consensus_skip"),
    path("review/panels/", views.panels, name="panels"),
    path("review/panels/bulk/", views.panels_bulk, name="panels_bulk"),
    path("review/panels/assign/<int:pk>/", views.panel_assign_page, name="panel_assign_page"),
    path("review/panels/assign/<int:pk>/save/", views.panel_assign_view, name="panel_assign"),
    path("review/panels/item/<int:pk>/", views.panel_item, name="panel_item"),
    path("review/panels/item/<int:pk>/score/", views.panel_score, name="panel_score"),
    path("review/panels/item/<int:pk>/revise/", views.panel_revise_view, name="panel_revise"),
    path(
        "review/panels/item/<int:pk>/regenerate/", views.panel_regenerate, name="panel_regenerate"
    ),
    path("review/items/<int:pk>/adjudicate/", views.adjudicate, name="adjudicate"),
    path("review/items/<int:pk>/history/", views.history, name="history"),
    path("review/overview/", views.overview, name="overview"),
    path("review/rubric/", views.rubric_guide, name="rubric_guide"),
    path("review/rubric/edit/", views.rubric_guide_edit, name="rubric_guide_edit"),
    path("review/judge/", include("review.judge.urls")),
    path("", include("review.quality.urls")),
]
