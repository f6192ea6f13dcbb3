"""Beat-scheduled tenancy upkeep: drop the sign-in throttle's ended windows."""

from celery import shared_task

from verticals.tenancy.throttle import prune


@shared_task(name="verticals.tenancy.prune_auth_failures")
def prune_auth_failures_task() -> int:

    return prune()
