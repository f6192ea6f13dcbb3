"""Quotas and rate limits, checked atomically before work starts.

* rate: a counter row per tenant and minute, raised only while it stays within the plan's limit
  (one conditional UPDATE: concurrent calls can never overshoot; a process takes a block of
  tokens at a time and hands them out itself) -> 429 with Retry-After;
* hard cap: a counter row per tenant, meter and period, raised by the units a call will use
  while they fit in the plan's included units -> 402 naming the meter and the plan; the
  reservation is settled against what the work really used (or released if it failed);
  a soft cap lets the work run and bills it as overage;
* a task the plan does not include -> 403 naming the plan.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone

from verticals.billing.catalog import Standing, standing
from verticals.billing.models import Plan, RateWindow, UsageCounter, UsageEvent
from verticals.billing.money import to_micro
from verticals.sdk.errors import ServiceError
from verticals.tenancy.backend.cursors import raw_cursor
from verticals.tenancy.scoping import for_tenant


class Refused(ServiceError):
    """Work refused by the plan: `status` 429 (rate), 402 (hard cap) or 403 (task not in plan)."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message, status=status, code=code, retry_after=retry_after)


def _units(value: Decimal) -> str:
    return f"{value:,f}".rstrip("0").rstrip(".") if "." in f"{value:f}" else f"{value:,}"


def check_task(plan: Plan, task: str) -> None:
    if not plan.allows_task(task):
        raise Refused(
            403,
            "task_not_in_plan",
            f"The task '{task}' is not part of the plan '{plan.name}' ({plan.code}); it includes "
            f"{', '.join(plan.enabled_tasks)}. Change plan to use it.",
        )


# A process takes rate tokens from the minute's counter a block at a time and hands them out
# itself: one statement per block instead of one per call. A block is at most 1/RATE_BLOCK_SHARE
# of the plan's limit (a plan of under 2 × RATE_BLOCK_SHARE calls a minute is counted call by call),
# and near the limit, where a whole block no longer fits, tokens are taken one at a time: the
# counter never passes the limit. Once it is there, the process refuses without asking again
# until the minute ends. Tokens a process took and did not use lapse with their minute.
RATE_BLOCK_SHARE = 100
RATE_BLOCK_MAX = 64
BLOCKS, SINGLE, SPENT = "blocks", "single", "spent"  # what a process still tries in a window
_leases: dict[
    tuple[int, str], list
] = {}  # (tenant pk, public id) -> [window, limit, tokens left, BLOCKS|SINGLE|SPENT]
_leases_lock = threading.Lock()
# a forked process never hands out its parent's tokens
os.register_at_fork(after_in_child=_leases.clear)


def take_rate(tenant, plan: Plan, now=None) -> None:
    """Count one call in this minute, or Refused(429) when the plan's limit is reached."""
    limit = plan.requests_per_minute
    if not limit:
        return
    now = now or timezone.now()
    window = now.replace(second=0, microsecond=0)
    key = (tenant.pk, tenant.public_id)
    with _leases_lock:
        lease = _leases.get(key)
        if lease is None or lease[0] != window or lease[1] != limit:
            lease = _leases[key] = [
                window,
                limit,
                0,
                BLOCKS if limit // RATE_BLOCK_SHARE > 1 else SINGLE,
            ]
        if lease[2] > 0:
            lease[2] -= 1
            return
        state = lease[3]
    if state == BLOCKS:
        block = min(RATE_BLOCK_MAX, limit // RATE_BLOCK_SHARE)
        taken = _take(tenant.pk, window, limit, block)
        with _leases_lock:
            if taken:
                lease[2] += block - 1
                return
            lease[3] = state = (
                SINGLE  # a block no longer fits this minute: call by call to the limit
            )
    if state == SINGLE and _take(tenant.pk, window, limit, 1):
        return
    lease[3] = SPENT  # the counter never goes down within its minute: refused here until the next
    retry = max(1, math.ceil((window + timedelta(minutes=1) - now).total_seconds()))
    raise Refused(
        429,
        "rate_limited",
        f"The plan '{plan.name}' allows {limit} metered calls a minute and this minute's are used; "
        f"retry in {retry} s.",
        retry_after=retry,
    )


def _take(tenant_id: int, window, limit: int, tokens: int) -> bool:
    """Count `tokens` calls in the window if they fit under `limit` (the window's row made first when missing)."""
    if _bump(tenant_id, window, limit, tokens):
        return True
    RateWindow.objects.bulk_create(
        [RateWindow(tenant_id=tenant_id, window_start=window)], ignore_conflicts=True
    )
    return _bump(tenant_id, window, limit, tokens)


def _bump(tenant_id: int, window, limit: int, tokens: int) -> bool:
    """Count `tokens` calls in the window if they fit under `limit`: one conditional UPDATE (atomic on every backend)."""

    quote = connection.ops.quote_name
    table, count = quote(RateWindow._meta.db_table), quote("count")
    with raw_cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {count} = {count} + %s WHERE {quote('tenant_id')} = %s AND {quote('window_start')} = %s "
            f"AND {count} <= %s",
            [tokens, tenant_id, connection.ops.adapt_datetimefield_value(window), limit - tokens],
        )
        return cursor.rowcount == 1


def _counters(tenant, start):
    # The tenant is given explicitly: admission runs before (and outside) any tenant context.
    # A counter is keyed by the start of the segment it counts (`period_start` in the table).
    return UsageCounter.dangerously_unscoped.filter(tenant_id=tenant.pk, period_start=start)


def ensure_counters(tenant, start, end, meters) -> None:
    """Counters of the segment [start, end) for these meters, each started from the ledger."""
    from django.db.models import Sum

    missing = sorted(
        set(meters)
        - set(_counters(tenant, start).filter(meter__in=meters).values_list("meter", flat=True))
    )
    for meter in missing:
        used = (
            UsageEvent.dangerously_unscoped.filter(  # the given tenant's
                tenant_id=tenant.pk,
                meter=meter,
                occurred_at__gte=start,
                occurred_at__lt=end,
            ).aggregate(q=Sum("quantity"))["q"]
            or 0
        )
        UsageCounter.dangerously_unscoped.bulk_create(  # the given tenant's counters
            [UsageCounter(tenant_id=tenant.pk, meter=meter, period_start=start, quantity=used)],
            ignore_conflicts=True,
        )


def _exhausted(plan: Plan, meter: str, included: Decimal, used: Decimal, end) -> Refused:
    return Refused(
        402,
        "quota_exceeded",
        f"The plan '{plan.name}' ({plan.code}) includes {_units(included)} {meter} until "
        f"{end:%Y-%m-%d %H:%M} UTC and {_units(used)} are used; it is hard-capped, so work that uses {meter} "
        f"stops until then. Upgrade the plan to go on.",
    )


@dataclass
class Admission:
    """Work let in: what it reserved against hard caps, settled once the work is done."""

    tenant: object
    standing: Standing | None
    reserved: dict[str, Decimal] = field(default_factory=dict)
    settled: bool = False

    @property
    def counted(self) -> tuple | None:
        """(start, end) of the segment whose hard-cap counters this work moves; None when none do."""
        if self.standing is None or self.standing.plan.cap != Plan.Cap.HARD:
            return None
        return self.standing.segment.start, self.standing.segment.end

    def release(self) -> None:
        """The work failed before it used anything: give back what it reserved (on the counter it
        reserved on, even when a period or segment has ended since)."""
        if self.settled:
            return
        self.settled = True
        for meter, quantity in self.reserved.items():
            if quantity:
                _counters(self.tenant, self.counted[0]).filter(meter=meter).update(
                    quantity=F("quantity") - to_micro(quantity)
                )


@for_tenant
def admit(
    tenant,
    *,
    task: str | None = None,
    units: dict[str, Decimal | None] | None = None,
    rate: bool = True,
) -> Admission:
    """Let work in or raise Refused. `units`: meter -> units the work will use (None: not known
    before it runs, e.g. generated tokens; it runs while some are left)."""
    if not settings.BILLING_METERING:
        # measuring what metering costs: nothing is limited or recorded
        return Admission(tenant, None)
    current = standing(tenant)
    admission = Admission(tenant, current)
    if current is None:
        return admission
    plan = current.plan
    if task is not None:
        check_task(plan, task)
    if rate:
        take_rate(tenant, plan)
    if plan.cap != Plan.Cap.HARD or not units:
        return admission
    start, end = admission.counted
    priced = [meter for meter in units if current.included(meter) is not None]
    if not priced:
        return admission
    ensure_counters(tenant, start, end, priced)
    try:
        for meter in priced:
            included, wanted = current.included(meter), units[meter]
            counter = _counters(tenant, start).filter(meter=meter)
            if wanted is None:
                used = counter.values_list("quantity", flat=True).first() or Decimal(0)
                if used >= included:
                    raise _exhausted(plan, meter, included, used, end)
                continue
            micro = to_micro(wanted)
            if not counter.filter(quantity__lte=included - wanted).update(
                quantity=F("quantity") + micro
            ):
                used = counter.values_list("quantity", flat=True).first() or Decimal(0)
                raise _exhausted(plan, meter, included, used, end)
            admission.reserved[meter] = wanted
    except Refused:
        admission.release()
        raise
    return admission


JOB_METERS = ("training.cpu_seconds", "training.gpu_seconds")


@for_tenant
def admit_job(tenant, *, task: str | None) -> Admission:
    """A job may start when the plan includes its task and, on a hard cap, some job time (CPU or
    GPU: the worker that takes it decides) is left in the period."""
    admission = admit(tenant, task=task, units=None, rate=False)
    current = admission.standing
    if current is None or current.plan.cap != Plan.Cap.HARD:
        return admission
    meters = [meter for meter in JOB_METERS if current.included(meter) is not None]
    if not meters:
        return admission
    start, end = admission.counted
    ensure_counters(tenant, start, end, meters)
    used = dict(_counters(tenant, start).filter(meter__in=meters).values_list("meter", "quantity"))
    if all(used.get(meter, Decimal(0)) >= current.included(meter) for meter in meters):
        meter = meters[0]
        raise _exhausted(
            current.plan, meter, current.included(meter), used.get(meter, Decimal(0)), end
        )
    return admission


def check_task_of(tenant, task: str) -> None:
    """Refused(403) when the tenant's plan does not include the task."""
    current = standing(tenant)
    if current is not None:
        check_task(current.plan, task)


def check_model_versions(tenant, count: int) -> None:
    """Refused(402) when keeping one more model version would pass the plan's limit."""
    current = standing(tenant)
    limit = current.plan.max_model_versions if current else None
    if limit is not None and count >= limit:
        raise Refused(
            402,
            "model_versions_limit",
            f"The plan '{current.plan.name}' ({current.plan.code}) keeps at most {limit} model versions and "
            f"{count} exist; delete one or upgrade the plan.",
        )


def running_jobs_limit(tenant) -> int | None:
    """The plan's concurrent-jobs limit, or None when it sets none."""
    current = standing(tenant)
    return current.plan.concurrent_jobs if current else None
