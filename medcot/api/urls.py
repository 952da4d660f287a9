"""The core's API routes (sign-in tokens, projects, imports, items) and the schema and its docs.
Each app serves its own resources (generation/api/urls.py, review/api/urls.py); medcot/urls.py
puts them under /api/ and ends with the API's JSON 404."""

from django.contrib.auth.decorators import login_required
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from medcot.api import views
from medcot.api.permissions import IsMember

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("projects/", views.ProjectList.as_view(), name="api-projects"),
    path("projects/<slug:slug>/", views.ProjectDetail.as_view(), name="api-project"),
    path("projects/<slug:slug>/imports/", views.ImportList.as_view(), name="api-imports"),
    path("projects/<slug:slug>/imports/<int:pk>/", views.ImportDetail.as_view(), name="api-import"),
    path("projects/<slug:slug>/items/", views.ItemList.as_view(), name="api-items"),
    path("projects/<slug:slug>/items/<int:pk>/", views.ItemDetail.as_view(), name="api-item"),
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
]
