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
        # A plan or its prices edited here (the admin) apply at once in this process.
        from django.db.models.signals import post_delete, post_save

        from verticals.billing.models import Plan, PlanPrice, Subscription

        for model in (Plan, PlanPrice, Subscription):
            post_save.connect(catalog.forget_every_standing, sender=model, dispatch_uid=f"billing-forget-{model.__name__}")
            post_delete.connect(catalog.forget_every_standing, sender=model, dispatch_uid=f"billing-forget-d-{model.__name__}")
