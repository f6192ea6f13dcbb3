from django.apps import AppConfig


class ServingConfig(AppConfig):
    name = "verticals.serving"
    label = "serving"
    verbose_name = "Serving"
