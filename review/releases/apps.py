from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "review.releases"
    label = "releases"
    verbose_name = "Releases and dashboards"
