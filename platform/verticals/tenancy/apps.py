from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "verticals.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"
