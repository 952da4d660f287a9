from django.apps import AppConfig


class MedcotConfig(AppConfig):
    name = "medcot"
    verbose_name = "MedCoT core"
