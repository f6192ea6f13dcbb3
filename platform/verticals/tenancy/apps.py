from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "verticals.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from verticals.tenancy import throttle

        # Every sign-in attempt (portal, admin) is counted by the throttle before its password is
        # checked; one that fails may reach a limit, one that succeeds gives its place back.
        user_login_failed.connect(
            throttle.login_failed, dispatch_uid="verticals.tenancy.throttle.login_failed"
        )
        user_logged_in.connect(
            throttle.login_succeeded, dispatch_uid="verticals.tenancy.throttle.login_succeeded"
        )
