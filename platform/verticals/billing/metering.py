"""The usage ledger: every billable unit of work is written once.

`record()` inserts events with ON CONFLICT DO NOTHING on (tenant, source, idempotency key): a
retried or duplicated event counts once, however many times and however concurrently it comes.
The hard-cap counters move by exactly what was inserted (less what admission reserved).
`record_call()` is a served call's way in: its events go through the process's ledger spool
(billing.spool), written in batches, unless they must be written at once.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import uuid
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django.db.models import F
from django.utils import timezone

from verticals.billing import spool
from verticals.billing.catalog import meter_keys, standing
from verticals.billing.models import UsageCounter, UsageEvent
from verticals.billing.money import to_micro
from verticals.billing.quotas import Admission, ensure_counters
from verticals.tenancy.backend.cursors import raw_cursor
from verticals.tenancy.models import ApiKey, Project, Tenant, User
from verticals.tenancy.scoping import platform_scope, tenant_context

log = logging.getLogger(__name__)

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
    model: str = (
        ""  # the model's public id (the ledger keeps ids, not references into the registry)
    )
    api_key: object = None
    user: object = None
    route: str = ""
    details: dict = field(default_factory=dict)
    occurred_at: datetime | None = None


_keys = itertools.count(1)
_key_prefix = uuid.uuid4().hex


def _new_key_prefix() -> None:
    global _key_prefix
    _key_prefix = uuid.uuid4().hex


# a forked process counts under a prefix of its own
os.register_at_fork(after_in_child=_new_key_prefix)


def call_key() -> str:
    """A fresh idempotency key for work done once here (a served call): this process's random
    prefix and a counter (no system call per key)."""
    return f"{_key_prefix}-{next(_keys):x}"


@dataclass
class _Row:
    key: str
    meter: str
    quantity: Decimal
    occurred_at: datetime
    values: tuple


def _rows(tenant, items: list[Usage], source: str) -> list[_Row]:
    """The events as ledger rows in key order (a key given twice is one event: the first); ValueError
    naming an unknown meter or a bad quantity."""
    known = meter_keys()
    now = timezone.now()
    rows: dict[str, _Row] = {}
    for item in items:
        if item.meter not in known:
            raise ValueError(f"Unknown meter '{item.meter}'; known: {', '.join(sorted(known))}.")
        quantity = item.quantity if isinstance(item.quantity, Decimal) else Decimal(item.quantity)
        if quantity < 0:
            raise ValueError(
                f"A quantity of {item.meter} is negative ({quantity}); usage is never negative."
            )
        key = item.idempotency_key or call_key()
        if key in rows:
            continue
        occurred_at = item.occurred_at or now
        rows[key] = _Row(
            key,
            item.meter,
            quantity,
            occurred_at,
            (
                tenant.pk,
                _pk(item.project) or item.project_id,
                item.meter,
                to_micro(quantity),
                item.task,
                item.model,
                _pk(item.api_key),
                _pk(item.user),
                source,
                item.route,
                key,
                item.details or {},
                occurred_at,
                now,
            ),
        )
    return [rows[key] for key in sorted(rows)]


def record(
    tenant, items: list[Usage], *, source: str, admission: Admission | None = None
) -> list[str]:
    """Write the events; returns the idempotency keys that were new (the others were counted before).

    Raises ValueError naming an unknown meter or a bad quantity before anything is written. A key
    given twice in one call is one event (the first). Rows go in key order, so two calls sending
    the same events in another order never wait on each other in a cycle.
    """
    if _metering_off(admission):
        return []
    return _write(tenant, _rows(tenant, items, source), admission)


def _metering_off(admission: Admission | None) -> bool:
    """BILLING_METERING is off (measuring what metering costs): nothing is recorded, nothing kept reserved."""
    if settings.BILLING_METERING:
        return False
    if admission is not None:
        admission.release()
    return True


def _write(tenant, ordered: list[_Row], admission: Admission | None) -> list[str]:
    counted, segment = _counted(tenant, admission)
    # One statement needs no transaction of its own (a served call's event: the common case). The
    # rows are the given tenant's, whoever writes them (a platform task, partner staff): the
    # database is told so (row-level security).
    with (
        tenant_context(tenant),
        transaction.atomic() if counted or len(ordered) > BATCH else nullcontext(),
    ):
        if counted:  # counters start from the ledger before these rows
            ensure_counters(
                tenant, *segment, sorted({row.meter for row in ordered if row.meter in counted})
            )
        inserted = set()
        for start in range(0, len(ordered), BATCH):
            inserted.update(_insert_new([row.values for row in ordered[start : start + BATCH]]))
        if counted:
            _move_counters(
                tenant,
                _deltas(
                    [row for row in ordered if row.key in inserted], counted, segment, admission
                ),
                segment,
            )
    if admission is not None:
        admission.settled = True
    return sorted(inserted)


def record_call(tenant, items: list[Usage], *, admission: Admission | None = None) -> None:
    """A served call's events (fresh keys): handed to this process's ledger spool (journaled here,
    written in batches: billing.spool), so that the call does not wait for a write of its own.

    Written at once instead when the caller is inside a transaction (the events belong to it), when
    the spool is off (BILLING_LEDGER_FLUSH_SECONDS=0), or when a hard-cap counter must follow the
    work now (usage that admission did not reserve exactly: generated tokens), and when the
    journal cannot be written."""
    if _metering_off(admission):
        return
    rows = _rows(tenant, items, "serving")
    if spool.enabled() and not connection.in_atomic_block:
        counted, segment = _counted(tenant, admission)
        if not counted or not any(_deltas(rows, counted, segment, admission).values()):
            try:
                spool.current().add([journal_line(row.values) for row in rows])
            except spool.SpoolClosed:  # the process is exiting: the ledger takes them now
                pass
            except Exception:  # the journal cannot take them (a full disk, the process exiting): the ledger takes them now
                log.exception(
                    "the ledger spool could not take a call's events; they are written at once"
                )
            else:
                if admission is not None:
                    admission.settled = True
                return
    _write(tenant, rows, admission)


# --- the spool's lines --------------------------------------------------------------------
# A journal line is a row's values as one JSON array; its times (positions 13, 14) are integer
# microseconds since 1970 UTC (exact, and cheaper to write than ISO 8601).

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
_journal = json.JSONEncoder(separators=(",", ":"))


def journal_line(row: tuple) -> str:
    return (
        _journal.encode(
            row[:12] + ((row[12] - EPOCH) // MICROSECOND, (row[13] - EPOCH) // MICROSECOND)
        )
        + "\n"
    )


def row_of(line: str) -> tuple:
    values = json.loads(line)
    if len(values) == len(COLUMNS) + 1:
        # written before the ledger dropped its model-version reference
        del values[5]
    return tuple(values[:12]) + (EPOCH + values[12] * MICROSECOND, EPOCH + values[13] * MICROSECOND)


@platform_scope("the ledger spool writes the events of every tenant served by this process")
def write_lines(lines: list[str]) -> None:
    """Put journal lines in the ledger (outside a transaction), events already there (same key)
    counted once. An event whose project, API key or user was deleted since the
    work is written without that reference; one whose tenant was deleted is dropped with it; one
    the database refuses for another reason is kept aside (spool.refused). Raises when the
    database cannot be reached (the lines are tried again later)."""
    if connection.in_atomic_block:
        raise RuntimeError(
            "the ledger spool writes outside a transaction (its segments go once written)"
        )
    try:
        _insert_lines(lines)
    except (OperationalError, InterfaceError):
        raise
    except DatabaseError:  # one event the ledger will not take: event by event, to find it
        for line in lines:
            _write_one(line)


def _write_one(line: str) -> None:
    row = row_of(line)
    try:
        try:
            _insert_new([row])
        except IntegrityError:  # a reference deleted meanwhile
            kept = _without_deleted_references(row)
            if kept is None:
                log.warning(
                    "a usage event of deleted tenant %s is dropped (key %s)", row[0], row[10]
                )
                return
            _insert_new([kept])
    except (OperationalError, InterfaceError):
        raise
    except DatabaseError as exc:
        spool.refused([line], str(exc).strip())


def _insert_lines(lines: list[str]) -> None:
    """One statement: the lines go as one JSON array that the database unpacks (no per-value
    parameters; on PostgreSQL one round trip). Times are stored as Django stores them (SQLite: in
    UTC, as settings.DATABASES sets no TIME_ZONE)."""
    if connection.vendor == "postgresql":
        text, number, when = (
            "r->>{}",
            "(r->>{})::bigint",
            "'epoch'::timestamptz + (r->>{})::bigint * interval '1 microsecond'",
        )
        kinds = (
            number,
            number,
            text,
            number,
            text,
            text,
            number,
            number,
            text,
            text,
            text,
            "(r->{})",
            when,
            when,
        )
        source = "jsonb_array_elements(%s::jsonb) AS r"
    else:  # SQLite: text 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC, as its backend writes datetimes
        value, when = (
            "json_extract(value, '$[{}]')",
            (  # (%% is a % once the parameters are bound)
                "strftime('%%Y-%%m-%%d %%H:%%M:%%S', json_extract(value, '$[{0}]') / 1000000, 'unixepoch') || "
                "CASE WHEN json_extract(value, '$[{0}]') %% 1000000 "
                "THEN printf('.%%06d', json_extract(value, '$[{0}]') %% 1000000) ELSE '' END"
            ),
        )
        kinds = (value,) * 12 + (when, when)
        source = "json_each(%s) WHERE true"  # (WHERE: an upsert's SELECT needs one to parse)
    into, conflict = _insert_clauses()
    with connection.wrap_database_errors, raw_cursor() as cursor:
        cursor.execute(
            f"{into} SELECT {', '.join(k.format(i) for i, k in enumerate(kinds))} FROM {source} {conflict}",
            ["[" + ",".join(lines) + "]"],
        )


def _insert_clauses() -> tuple[str, str]:
    """`INSERT INTO ledger (COLUMNS)` and the `ON CONFLICT … DO NOTHING` that counts a key once."""
    quote = connection.ops.quote_name
    return (
        f"INSERT INTO {quote(UsageEvent._meta.db_table)} ({', '.join(quote(c) for c in COLUMNS)})",
        f"ON CONFLICT ({quote('tenant_id')}, {quote('source')}, {quote('idempotency_key')}) DO NOTHING",
    )


def _params(row: tuple) -> tuple:
    """A row's values as the database takes them (its details as JSON, its times in the backend's form)."""
    ops = connection.ops
    return row[:11] + (
        ops.adapt_json_value(row[11], None),
        ops.adapt_datetimefield_value(row[12]),
        ops.adapt_datetimefield_value(row[13]),
    )


def _without_deleted_references(row: tuple) -> tuple | None:
    if not Tenant.objects.filter(pk=row[0]).exists():
        return None
    values = list(row)
    for index, model in ((1, Project), (6, ApiKey), (7, User)):
        if values[index] is not None and not model._base_manager.filter(pk=values[index]).exists():
            values[index] = None
    return tuple(values)


def _pk(obj):
    return None if obj is None else obj.pk


# The ledger's columns in the order `_Row.values` holds them.
COLUMNS = (
    "tenant_id",
    "project_id",
    "meter",
    "quantity",
    "task",
    "model",
    "api_key_id",
    "user_id",
    "source",
    "route",
    "idempotency_key",
    "details",
    "occurred_at",
    "recorded_at",
)
_SQL: dict[tuple[str, int], str] = {}


def _insert_new(values: list[tuple]) -> list[str]:
    """INSERT … ON CONFLICT DO NOTHING RETURNING: the keys this statement inserted (PostgreSQL, SQLite ≥ 3.35)."""
    sql = _SQL.get((connection.vendor, len(values)))
    if sql is None:
        into, conflict = _insert_clauses()
        one = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
        sql = _SQL[(connection.vendor, len(values))] = (
            f"{into} VALUES {', '.join([one] * len(values))} {conflict} RETURNING {connection.ops.quote_name('idempotency_key')}"
        )
    params = [value for row in values for value in _params(row)]
    with connection.wrap_database_errors, raw_cursor() as cursor:
        cursor.execute(sql, params)
        return [key for (key,) in cursor.fetchall()]


def _counted(tenant, admission: Admission | None) -> tuple[dict[str, Decimal], tuple | None]:
    """Meters whose hard-cap counter follows usage, with what admission reserved on each, and the
    segment (start, end) they count: the one the work was admitted in."""
    if admission is None:
        admission = Admission(tenant, standing(tenant))
    segment = admission.counted
    if segment is None:
        return {}, None
    return {
        meter: admission.reserved.get(meter, Decimal(0)) for meter in admission.standing.meters()
    }, segment


def _deltas(
    rows: list[_Row], counted: dict[str, Decimal], segment: tuple, admission: Admission | None
) -> dict[str, Decimal]:
    """How far the segment's hard-cap counters move for these rows: what they used in it less what
    admission reserved. (Usage sent late for an earlier segment goes to the ledger and the invoice, not to a cap.)"""
    start, end = segment
    deltas: dict[str, Decimal] = defaultdict(Decimal)
    if admission is not None:
        for meter, reserved in admission.reserved.items():
            deltas[meter] -= reserved
    for row in rows:
        if row.meter in counted and start <= row.occurred_at < end:
            deltas[row.meter] += row.quantity
    return deltas


def _move_counters(tenant, deltas: dict[str, Decimal], segment: tuple) -> None:
    for meter, delta in sorted(deltas.items()):  # one order for every caller: no deadlock cycle
        if delta:
            UsageCounter.dangerously_unscoped.filter(
                tenant_id=tenant.pk, meter=meter, period_start=segment[0]
            ).update(  # the given tenant's
                quantity=F("quantity") + to_micro(delta)
            )


spool.writes_with(write_lines)
