from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "verticals.portal"
    label = "portal"
    verbose_name = "Portal"
