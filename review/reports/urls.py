from django.urls import path

from review.reports import views

urlpatterns = [
    path("projects/<slug:slug>/dashboard/", views.dashboard, name="project_dashboard"),
]
