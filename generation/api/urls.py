"""Generation's API routes: LLM endpoints, runs and their LLM calls (under /api/)."""

from django.urls import path

from generation.api import endpoint_views, run_views

urlpatterns = [
    path("llm/endpoints/", endpoint_views.EndpointList.as_view(), name="api-endpoints"),
    path("llm/endpoints/<int:pk>/", endpoint_views.EndpointDetail.as_view(), name="api-endpoint"),
    path(
        "llm/endpoints/<int:pk>/test/",
        endpoint_views.EndpointTest.as_view(),
        name="api-endpoint-test",
    ),
    path("projects/<slug:slug>/runs/", run_views.RunList.as_view(), name="api-runs"),
    path("projects/<slug:slug>/runs/<int:pk>/", run_views.RunDetail.as_view(), name="api-run"),
    *[
        path(
            f"projects/<slug:slug>/runs/<int:pk>/{action}/",
            run_views.RunControl.as_view(action_name=action),
            name=f"api-run-{action}",
        )
        for action in run_views.RUN_CONTROLS
    ],
    path(
        "projects/<slug:slug>/runs/<int:pk>/calls/",
        run_views.RunCalls.as_view(),
        name="api-run-calls",
    ),
]
