from django.urls import path

from generation import views

urlpatterns = [
    path("projects/<slug:slug>/runs/", views.run_list, name="generation_runs"),
    path("projects/<slug:slug>/runs/start/", views.run_start_view, name="generation_run_start"),
    path("projects/<slug:slug>/runs/<int:pk>/", views.run_detail, name="generation_run_detail"),
    path(
        "projects/<slug:slug>/runs/<int:pk>/replies/",
        views.run_replies,
        name="generation_run_replies",
    ),
    path(
        "projects/<slug:slug>/runs/<int:pk>/<str:action>/",
        views.run_control,
        name="generation_run_control",
    ),
    path(
        "projects/<slug:slug>/runs/<int:pk>/jobs/<int:job_pk>/retry/",
        views.job_retry_view,
        name="generation_job_retry",
    ),
    path(
        "projects/<slug:slug>/items/<int:pk>/retry/",
        views.item_retry_view,
        name="generation_item_retry",
    ),
    path("llm/", views.llm_settings, name="generation_llm"),
    path("llm/endpoints/new/", views.endpoint_create, name="generation_endpoint_create"),
    path("llm/endpoints/<int:pk>/edit/", views.endpoint_edit, name="generation_endpoint_edit"),
    path("llm/endpoints/<int:pk>/test/", views.endpoint_test, name="generation_endpoint_test"),
    path(
        "llm/endpoints/<int:pk>/enabled/",
        views.endpoint_enabled,
        name="generation_endpoint_enabled",
    ),
    path("llm/prompts/<int:pk>/edit/", views.prompt_edit, name="generation_prompt_edit"),
]
