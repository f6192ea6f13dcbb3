from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "verticals.registry"
    label = "registry"
    verbose_name = "Datasets and models"

    def ready(self) -> None:
        from verticals.billing.port import measures_storage
        from verticals.registry import runners  # noqa: F401  (registers train, evaluate, batch_predict)
        from verticals.registry.selectors import stored_bytes_by_tenant

        measures_storage(stored_bytes_by_tenant)
