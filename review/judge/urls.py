from django.urls import path

from review.judge import views

app_name = "judge"

urlpatterns = [
    path("projects/<slug:slug>/", views.calibration, name="calibration"),
    path("projects/<slug:slug>/settings/", views.settings_update, name="settings"),
    path("items/<int:pk>/", views.opinion, name="opinion"),
    path("items/<int:pk>/feedback/", views.feedback, name="feedback"),
]
