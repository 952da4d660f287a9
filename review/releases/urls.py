from django.urls import path

from review.releases import views

urlpatterns = [
    path("projects/<slug:slug>/releases/", views.release_list, name="release_list"),
    path(
        "projects/<slug:slug>/releases/<str:version>/",
        views.release_detail,
        name="release_detail",
    ),
    path(
        "projects/<slug:slug>/releases/<str:version>/download/",
        views.release_download,
        name="release_download",
    ),
    path(
        "projects/<slug:slug>/releases/<str:version>/files/<path:name>",
        views.release_file,
        name="release_file",
    ),
    path(
        "projects/<slug:slug>/releases/<str:version>/diff/",
        views.release_diff,
        name="release_diff",
    ),
    path(
        "projects/<slug:slug>/releases/<str:version>/retry/",
        views.release_retry,
        name="release_retry",
    ),
]
