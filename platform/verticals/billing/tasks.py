"""Beat-scheduled billing work: close ended periods, snapshot storage, drop old rate windows."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from verticals.billing.invoicing import close_period
from verticals.billing.models import RateWindow
from verticals.billing.sources import snapshot_storage
from verticals.tenancy.scoping import platform_scope


@shared_task(name="verticals.billing.close_period")
def close_period_task() -> list[str]:

    return [invoice.number for invoice in close_period()]


@shared_task(name="verticals.billing.snapshot_storage")
def snapshot_storage_task() -> int:

    now = timezone.now()
    return snapshot_storage(now.date(), at=now)


@shared_task(name="verticals.billing.prune_rate_windows")
def prune_rate_windows_task() -> int:

    with platform_scope("old rate windows of every tenant go"):
        deleted, _ = RateWindow.objects.filter(
            window_start__lt=timezone.now() - timedelta(minutes=10)
        ).delete()
    return deleted
