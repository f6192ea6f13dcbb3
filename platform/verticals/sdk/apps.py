from django.apps import AppConfig


class SdkConfig(AppConfig):
    name = "verticals.sdk"
    label = "sdk"
    verbose_name = "Plugin SDK"

    def ready(self) -> None:
        from verticals.sdk import discovery

        # Every plugin is checked when Django starts: a broken one stops start-up with a message.
        discovery.load()
