from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "verticals.api"
    label = "api"
    verbose_name = "REST API"

    def ready(self):
        from verticals.api import schema  # noqa: F401  (registers the OpenAPI auth extensions)
