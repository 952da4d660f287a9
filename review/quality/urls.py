from django.urls import path

from review.quality import views

app_name = "quality"

urlpatterns = [
    path("projects/<slug:slug>/reliability/", views.reliability, name="reliability"),
    path("projects/<slug:slug>/controls/", views.controls, name="controls"),
    path(
        "projects/<slug:slug>/reliability/alerts/<int:pk>/second-opinion/",
        views.alert_second_opinion,
        name="alert_second_opinion",
    ),
    path(
        "projects/<slug:slug>/reliability/alerts/<int:pk>/close/",
        views.alert_close,
        name="alert_close",
    ),
]
