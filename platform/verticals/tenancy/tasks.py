"""Beat-scheduled tenancy upkeep: drop the sign-in throttle's ended windows."""

from celery import shared_task


@shared_task(name="verticals.tenancy.prune_auth_failures")
def prune_auth_failures_task() -> int:
    from verticals.tenancy.throttle import prune

    return prune()
