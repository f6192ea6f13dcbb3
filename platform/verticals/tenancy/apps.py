from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "verticals.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"

    def ready(self):
        from django.contrib.auth.signals import user_login_failed

        from verticals.tenancy import throttle

        # Every failed call of authenticate() (portal, admin) is counted by the sign-in throttle.
        user_login_failed.connect(throttle.login_failed, dispatch_uid="verticals.tenancy.throttle.login_failed")
