from django.apps import AppConfig


class VisionConfig(AppConfig):
    name = "vision"
    label = "vision"
    verbose_name = "Vision plugin"
    # The Plugin this app brings (a dotted path: torch is imported only when a task needs it).
    plugin = "vision.plugin.VisionPlugin"
