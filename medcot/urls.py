from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.i18n import JavaScriptCatalog

from medcot import i18n, views
from medcot.api import views as api_views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("language/", i18n.language_set, name="language_set"),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript_catalog"),
    path("projects/", views.project_list, name="project_list"),
    path("projects/new/", views.project_new, name="project_new"),
    path("projects/<slug:slug>/", views.project_detail, name="project_detail"),
    path("projects/<slug:slug>/items/<int:pk>/", views.item_detail, name="item_detail"),
    path("projects/<slug:slug>/import/", views.project_import, name="project_import"),
    path(
        "projects/<slug:slug>/import/<int:pk>/preview/",
        views.import_batch_preview,
        name="import_batch_preview",
    ),
    path(
        "projects/<slug:slug>/import/<int:pk>/",
        views.import_batch_detail,
        name="import_batch_detail",
    ),
    path("", include("generation.urls")),
    path("", include("review.urls")),
    path("", include("review.releases.urls")),
    path("", include("review.reports.urls")),
    path("api/", include("medcot.api.urls")),
    path("api/", include("generation.api.urls")),
    path("api/", include("review.api.urls")),
    # Anything else under /api/ is a JSON 404 in the API's error shape, not the HTML page.
    # Any character, so a path with an encoded newline (fuzzers send them) is caught here too.
    path("api/", include([re_path(r"^[\s\S]*$", api_views.not_found, name="api-not-found")])),
    path("django-admin/", admin.site.urls),
]

handler403 = "medcot.errors.permission_denied"
handler404 = "medcot.errors.page_not_found"
handler500 = "medcot.errors.server_error"
