from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "verticals.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self):
        from django.db.models.signals import post_migrate

        from verticals.billing import catalog

        # The meter catalog follows the code: core's meters and every installed plugin's.
        post_migrate.connect(catalog.sync_meters_after_migrate, sender=self)
