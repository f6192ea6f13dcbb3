"""The usage ledger: every billable unit of work is written once.

`record()` inserts events with ON CONFLICT DO NOTHING on (tenant, source, idempotency key): a
retried or duplicated event counts once, however many times and however concurrently it comes.
The hard-cap counters move by exactly what was inserted (less what admission reserved).
"""

from __future__ import annotations

import uuid
from contextlib import nullcontext
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from verticals.billing.catalog import meter_keys, period_of, standing
from verticals.billing.models import Plan, UsageCounter, UsageEvent
from verticals.billing.money import to_micro
from verticals.billing.quotas import Admission, ensure_counters

BATCH = 500


@dataclass
class Usage:
    """One unit of work to record (quantity in the meter's unit)."""

    meter: str
    quantity: Decimal
    idempotency_key: str = ""
    project: object = None
    task: str = ""
    model_version: object = None
    model: str = ""
    api_key: object = None
    user: object = None
    route: str = ""
    details: dict = field(default_factory=dict)
    occurred_at: datetime | None = None


def call_key() -> str:
    """A fresh idempotency key for work done once here (a served call)."""
    return uuid.uuid4().hex


def record(tenant, items: list[Usage], *, source: str, admission: Admission | None = None) -> list[str]:
    """Write the events; returns the idempotency keys that were new (the others were counted before).

    Raises ValueError naming an unknown meter or a bad quantity before anything is written.
    """
    if not settings.BILLING_METERING:
        if admission is not None:
            admission.release()
        return []
    known = meter_keys()
    now = timezone.now()
    rows = []
    for item in items:
        if item.meter not in known:
            raise ValueError(f"Unknown meter '{item.meter}'; known: {', '.join(sorted(known))}.")
        quantity = Decimal(item.quantity) if not isinstance(item.quantity, Decimal) else item.quantity
        if quantity < 0:
            raise ValueError(f"A quantity of {item.meter} is negative ({quantity}); usage is never negative.")
        rows.append(UsageEvent(
            tenant_id=tenant.pk, project=item.project, meter=item.meter, quantity=quantity, task=item.task,
            model_version=item.model_version, model=item.model, api_key=item.api_key, user=item.user, source=source,
            route=item.route, idempotency_key=item.idempotency_key or call_key(), details=item.details,
            occurred_at=item.occurred_at or now, recorded_at=now,
        ))
    counted, anchor = _counted(tenant, admission)
    # One statement needs no transaction of its own (a served call's event: the common case).
    with transaction.atomic() if counted or len(rows) > BATCH else nullcontext():
        periods = {(row.meter, period_of(row.occurred_at, anchor)[0]) for row in rows if row.meter in counted}
        for meter, start in periods:  # counters start from the ledger before these rows
            ensure_counters(tenant, start, [meter])
        inserted = set()
        for start in range(0, len(rows), BATCH):
            inserted.update(_insert_new(rows[start:start + BATCH]))
        if counted:
            _move_counters(tenant, [row for row in rows if row.idempotency_key in inserted], counted, anchor, admission)
    if admission is not None:
        admission.settled = True
    return sorted(inserted)


_FIELDS = None


def _insert_new(rows: list[UsageEvent]) -> list[str]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: the keys this statement inserted (PostgreSQL, SQLite ≥ 3.35)."""
    global _FIELDS
    if _FIELDS is None:
        _FIELDS = [f for f in UsageEvent._meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    params = []
    for row in rows:
        params.extend(f.get_db_prep_save(f.pre_save(row, True), connection) for f in _FIELDS)
    one = "(" + ", ".join(["%s"] * len(_FIELDS)) + ")"
    sql = (
        f"INSERT INTO {quote(UsageEvent._meta.db_table)} ({', '.join(quote(f.column) for f in _FIELDS)}) "
        f"VALUES {', '.join([one] * len(rows))} "
        f"ON CONFLICT ({quote('tenant_id')}, {quote('source')}, {quote('idempotency_key')}) DO NOTHING "
        f"RETURNING {quote('idempotency_key')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [key for (key,) in cursor.fetchall()]


def _counted(tenant, admission: Admission | None) -> tuple[dict[str, Decimal], int]:
    """Meters whose hard-cap counter follows usage, with what admission reserved on each; the anchor day."""
    current = admission.standing if admission is not None else standing(tenant)
    if current is None or current.plan.cap != Plan.Cap.HARD:
        return {}, 1
    reserved = admission.reserved if admission is not None else {}
    return {meter: reserved.get(meter, Decimal(0)) for meter in current.meters()}, current.subscription.anchor_day


def _move_counters(tenant, rows: list[UsageEvent], counted: dict[str, Decimal], anchor: int,
                   admission: Admission | None) -> None:
    """Raise the hard-cap counters by what was inserted, less what admission reserved."""
    deltas: dict[tuple, Decimal] = defaultdict(Decimal)
    if admission is not None and admission.reserved:
        this_period = admission.standing.period[0]
        for meter, reserved in admission.reserved.items():
            deltas[(meter, this_period)] -= reserved
    for row in rows:
        if row.meter in counted:
            deltas[(row.meter, period_of(row.occurred_at, anchor)[0])] += row.quantity
    for (meter, start), delta in deltas.items():
        if delta:
            UsageCounter.dangerously_unscoped.filter(tenant_id=tenant.pk, meter=meter, period_start=start).update(
                quantity=F("quantity") + to_micro(delta))
