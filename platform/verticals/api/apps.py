from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "verticals.api"
    label = "api"
    verbose_name = "REST API"
