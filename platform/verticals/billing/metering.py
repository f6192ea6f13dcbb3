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

from verticals.billing.catalog import meter_keys, standing
from verticals.billing.models import UsageCounter, UsageEvent
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
    project_id: int | None = None  # instead of `project`, when only its id is at hand
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


@dataclass
class _Row:
    key: str
    meter: str
    quantity: Decimal
    occurred_at: datetime
    values: tuple


def record(tenant, items: list[Usage], *, source: str, admission: Admission | None = None) -> list[str]:
    """Write the events; returns the idempotency keys that were new (the others were counted before).

    Raises ValueError naming an unknown meter or a bad quantity before anything is written. A key
    given twice in one call is one event (the first). Rows go in key order, so two calls sending
    the same events in another order never wait on each other in a cycle.
    """
    if not settings.BILLING_METERING:
        if admission is not None:
            admission.release()
        return []
    known = meter_keys()
    now = timezone.now()
    rows: dict[str, _Row] = {}
    for item in items:
        if item.meter not in known:
            raise ValueError(f"Unknown meter '{item.meter}'; known: {', '.join(sorted(known))}.")
        quantity = item.quantity if isinstance(item.quantity, Decimal) else Decimal(item.quantity)
        if quantity < 0:
            raise ValueError(f"A quantity of {item.meter} is negative ({quantity}); usage is never negative.")
        key = item.idempotency_key or call_key()
        if key in rows:
            continue
        occurred_at = item.occurred_at or now
        rows[key] = _Row(key, item.meter, quantity, occurred_at, (
            tenant.pk, _pk(item.project) or item.project_id, item.meter, to_micro(quantity), item.task, _pk(item.model_version), item.model,
            _pk(item.api_key), _pk(item.user), source, item.route, key, _json(item.details), _when(occurred_at), _when(now),
        ))
    ordered = [rows[key] for key in sorted(rows)]
    counted, segment = _counted(tenant, admission)
    # One statement needs no transaction of its own (a served call's event: the common case).
    with transaction.atomic() if counted or len(ordered) > BATCH else nullcontext():
        if counted:  # counters start from the ledger before these rows
            ensure_counters(tenant, *segment, sorted({row.meter for row in ordered if row.meter in counted}))
        inserted = set()
        for start in range(0, len(ordered), BATCH):
            inserted.update(_insert_new([row.values for row in ordered[start:start + BATCH]]))
        if counted:
            _move_counters(tenant, [row for row in ordered if row.key in inserted], counted, segment, admission)
    if admission is not None:
        admission.settled = True
    return sorted(inserted)


def _pk(obj):
    return None if obj is None else obj.pk


def _json(details: dict):
    return connection.ops.adapt_json_value(details or {}, None)


def _when(moment: datetime):
    return connection.ops.adapt_datetimefield_value(moment)


# The ledger's columns in the order `_Row.values` holds them.
COLUMNS = ("tenant_id", "project_id", "meter", "quantity", "task", "model_version_id", "model", "api_key_id", "user_id",
           "source", "route", "idempotency_key", "details", "occurred_at", "recorded_at")
_SQL: dict[tuple[str, int], str] = {}


def _insert_new(values: list[tuple]) -> list[str]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: the keys this statement inserted (PostgreSQL, SQLite ≥ 3.35)."""
    sql = _SQL.get((connection.vendor, len(values)))
    if sql is None:
        quote = connection.ops.quote_name
        one = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
        sql = _SQL[(connection.vendor, len(values))] = (
            f"INSERT INTO {quote(UsageEvent._meta.db_table)} ({', '.join(quote(c) for c in COLUMNS)}) "
            f"VALUES {', '.join([one] * len(values))} "
            f"ON CONFLICT ({quote('tenant_id')}, {quote('source')}, {quote('idempotency_key')}) DO NOTHING "
            f"RETURNING {quote('idempotency_key')}"
        )
    with raw_cursor() as cursor:
        cursor.execute(sql, [value for row in values for value in row])
        return [key for (key,) in cursor.fetchall()]


def raw_cursor():
    """A cursor for the hot path's statements. On PostgreSQL, psycopg's own cursor on Django's
    connection (same transaction): parameters bound by the server, the statement prepared once
    it repeats — a fraction of the client-side work of Django's default (interpolating) cursor."""
    if connection.vendor == "postgresql":
        import psycopg

        connection.ensure_connection()
        return psycopg.Cursor(connection.connection)  # Django's connection makes client-side cursors by default
    return connection.cursor()


def _counted(tenant, admission: Admission | None) -> tuple[dict[str, Decimal], tuple | None]:
    """Meters whose hard-cap counter follows usage, with what admission reserved on each, and the
    segment (start, end) they count: the one the work was admitted in."""
    if admission is None:
        admission = Admission(tenant, standing(tenant))
    segment = admission.counted
    if segment is None:
        return {}, None
    return {meter: admission.reserved.get(meter, Decimal(0)) for meter in admission.standing.meters()}, segment


def _move_counters(tenant, rows: list[_Row], counted: dict[str, Decimal], segment: tuple, admission: Admission | None) -> None:
    """Raise the segment's hard-cap counters by what was inserted in it, less what admission reserved.
    (Usage sent late for an earlier segment goes to the ledger and the invoice, not to a cap.)"""
    start, end = segment
    deltas: dict[str, Decimal] = defaultdict(Decimal)
    if admission is not None:
        for meter, reserved in admission.reserved.items():
            deltas[meter] -= reserved
    for row in rows:
        if row.meter in counted and start <= row.occurred_at < end:
            deltas[row.meter] += row.quantity
    for meter, delta in sorted(deltas.items()):  # one order for every caller: no deadlock cycle
        if delta:
            UsageCounter.dangerously_unscoped.filter(tenant_id=tenant.pk, meter=meter, period_start=start).update(
                quantity=F("quantity") + to_micro(delta))
