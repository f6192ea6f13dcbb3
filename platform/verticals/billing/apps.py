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
        # A plan, its prices, a subscription or a contract changed: every process forgets the plans it
        # remembers (this one at once, the others at their next check of the catalog's version).
        from django.db.models.signals import post_delete, post_save

        from verticals.billing.models import Contract, ContractPrice, Plan, PlanPrice, Subscription

        for model in (Plan, PlanPrice, Subscription, Contract, ContractPrice):
            post_save.connect(
                catalog.catalog_changed,
                sender=model,
                dispatch_uid=f"billing-catalog-{model.__name__}",
            )
            post_delete.connect(
                catalog.catalog_changed,
                sender=model,
                dispatch_uid=f"billing-catalog-d-{model.__name__}",
            )
