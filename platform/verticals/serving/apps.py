from django.apps import AppConfig

from verticals.serving import memory


class ServingConfig(AppConfig):
    name = "verticals.serving"
    label = "serving"
    verbose_name = "Serving"

    def ready(self) -> None:
        from django.core.signals import request_finished

        request_finished.connect(_release_memory, dispatch_uid="serving.release_memory")


def _release_memory(sender, **kwargs) -> None:
    """After each request: what it freed goes back to the system (verticals.serving.memory)."""

    memory.release_soon()
