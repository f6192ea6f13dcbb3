"""Usage from staff-run external sources: a batch of events checked against the ledger's rules
(every problem reported together, by `events[i].field`), then recorded all or none, once per
(tenant, source, idempotency key)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from verticals.billing import metering
from verticals.billing.catalog import meter_keys
from verticals.billing.models import Invoice
from verticals.billing.moments import as_utc, moment_text
from verticals.billing.money import QUANTITY_PLACES, MoneyError, as_decimal
from verticals.tenancy.models import Project, Tenant
from verticals.tenancy.scoping import tenant_context

MAX_EVENTS = 1000
MAX_QUANTITY = Decimal(10) ** 12  # micro-units of this still fit a 64-bit integer
FUTURE_SLACK = timedelta(minutes=5)
SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,54}$")


@dataclass
class UsageBatch:
    """A checked batch: its problems (empty: it may be recorded) and its events by tenant."""

    problems: dict[str, list[str]]
    tenants: dict[int, Tenant] = field(default_factory=dict)
    items: list[tuple[Tenant, metering.Usage]] = field(default_factory=list)


EVENT_FIELDS = {
    "tenant",
    "meter",
    "quantity",
    "idempotency_key",
    "occurred_at",
    "project",
    "task",
    "details",
}


class EventProblems:
    """Problems of a batch, by `events[i].field`, reported together (the first few)."""

    LIMIT = 20

    def __init__(self):
        self.found: dict[str, list[str]] = {}
        self.more = 0

    def add(self, where: str, message: str) -> None:
        if len(self.found) < self.LIMIT:
            self.found.setdefault(where, [message])
        else:
            self.more += 1

    def as_dict(self) -> dict[str, list[str]]:
        """By `events[i].field`; with more than LIMIT, `events` says how many more there were."""
        if not self.more:
            return dict(self.found)
        return {
            **self.found,
            "events": [f"{self.more} more problems not listed; nothing was recorded."],
        }


def usage_source_name(raw) -> str:
    """The ledger's name of a source as sent (`crm` or `external:crm`): external:crm."""
    if not isinstance(raw, str) or not raw:
        raise ValidationError("Name the source: external:<name> or <name>.")
    name = raw[len("external:") :] if raw.startswith("external:") else raw
    if not SOURCE_NAME.match(name):
        raise ValidationError(
            f"'{raw[:80]}' is not a source name: lower-case letters, digits, '.', '_' "
            "and '-', at most 55, e.g. external:crm."
        )
    return f"external:{name}"


def usage_events_check(*, events: list, now: datetime | None = None) -> UsageBatch:
    """Every event checked against the ledger's rules before anything is written: the problems
    (none: the batch may be recorded), and the events as the ledger takes them, by tenant."""
    problems = EventProblems()
    now = now or timezone.now()
    oldest = now - timedelta(days=settings.BILLING_EVENT_MAX_AGE_DAYS)
    known_meters = meter_keys()
    wanted_tenants = {
        e.get("tenant") for e in events if isinstance(e, dict) and isinstance(e.get("tenant"), str)
    }
    tenants = {
        t.public_id: t
        for t in Tenant.objects.filter(public_id__in=wanted_tenants).select_related("partner")
    }
    wanted_projects = {
        e.get("project")
        for e in events
        if isinstance(e, dict) and isinstance(e.get("project"), str)
    }
    # Staff send usage for any tenant: each project is checked against the event's own tenant below.
    projects = {
        p.public_id: p
        for p in Project.dangerously_unscoped.filter(
            public_id__in=wanted_projects, tenant__in=tenants.values()
        )
    }
    invoiced: dict[int, list[tuple[datetime, datetime]]] = {}
    for (
        tenant_id,
        start,
        end,
    ) in Invoice.dangerously_unscoped.filter(  # the events' own tenants (staff send for any)
        kind=Invoice.Kind.RETAIL, tenant__in=tenants.values()
    ).values_list("tenant_id", "period_start", "period_end"):
        invoiced.setdefault(tenant_id, []).append((start, end))
    seen: set[tuple[int, str]] = set()
    items: list[tuple[Tenant, metering.Usage]] = []
    for i, event in enumerate(events):
        at = f"events[{i}]"
        if not isinstance(event, dict):
            problems.add(at, "Give an object with tenant, meter, quantity and idempotency_key.")
            continue
        for extra in sorted(set(event) - EVENT_FIELDS)[:1]:
            problems.add(
                f"{at}.{extra}", f"Unknown field; an event takes {', '.join(sorted(EVENT_FIELDS))}."
            )
        tenant = tenants.get(event.get("tenant")) if isinstance(event.get("tenant"), str) else None
        if tenant is None:
            problems.add(
                f"{at}.tenant",
                f"No tenant '{str(event.get('tenant'))[:64]}'."
                if event.get("tenant")
                else "Name the tenant (its id, ten_…).",
            )
        meter = event.get("meter")
        if not isinstance(meter, str) or meter not in known_meters:
            problems.add(
                f"{at}.meter",
                f"Unknown meter '{str(meter)[:64]}'; known: {', '.join(sorted(known_meters))}.",
            )
        quantity = None
        raw_quantity = event.get("quantity")
        if raw_quantity is None:
            problems.add(f"{at}.quantity", "Give the quantity as a decimal string or an integer.")
        else:
            try:
                quantity = as_decimal(raw_quantity, field="quantity", places=QUANTITY_PLACES)
                if quantity < 0:
                    raise MoneyError(f"quantity: {quantity} is negative; usage is never negative.")
                if quantity >= MAX_QUANTITY:
                    raise MoneyError(
                        f"quantity: {quantity} is too large; send at most {MAX_QUANTITY - 1} units per event."
                    )
            except MoneyError as exc:
                problems.add(f"{at}.quantity", str(exc).split(": ", 1)[-1])
                quantity = None
        key = event.get("idempotency_key")
        if not isinstance(key, str) or not key.strip():
            problems.add(
                f"{at}.idempotency_key",
                "Give an idempotency key: the same event sent again must carry the same key.",
            )
            key = None
        elif len(key) > 200:
            problems.add(
                f"{at}.idempotency_key", f"At most 200 characters; this one has {len(key)}."
            )
            key = None
        elif tenant is not None:
            if (tenant.pk, key) in seen:
                problems.add(
                    f"{at}.idempotency_key",
                    f"'{key[:80]}' is in this batch twice for tenant {tenant.public_id}.",
                )
            seen.add((tenant.pk, key))
        occurred = None
        if event.get("occurred_at") is not None:
            raw = event["occurred_at"]
            try:
                occurred = parse_datetime(raw) if isinstance(raw, str) else None
            except ValueError:
                occurred = None
            if occurred is None or occurred.tzinfo is None:
                problems.add(
                    f"{at}.occurred_at",
                    "Give an ISO date-time with a zone, e.g. 2026-10-05T12:00:00Z.",
                )
                occurred = None
            else:
                try:
                    occurred = as_utc(occurred)
                except ValueError as exc:
                    problems.add(f"{at}.occurred_at", str(exc))
                    occurred = None
        moment = occurred or now
        if occurred is not None:
            if occurred > now + FUTURE_SLACK:
                problems.add(
                    f"{at}.occurred_at",
                    f"{moment_text(occurred)} is in the future; usage is sent after it happens.",
                )
            elif occurred < oldest:
                problems.add(
                    f"{at}.occurred_at",
                    f"{moment_text(occurred)} is older than {settings.BILLING_EVENT_MAX_AGE_DAYS} days; "
                    "such usage is no longer accepted.",
                )
        if tenant is not None:
            for start, end in invoiced.get(tenant.pk, ()):
                if start <= moment < end:
                    problems.add(
                        f"{at}.occurred_at",
                        f"{moment_text(moment)} is in the period {start:%Y-%m-%d} – {end:%Y-%m-%d}, "
                        f"already invoiced to {tenant.public_id}; correct it with a credit note.",
                    )
                    break
        project = None
        if event.get("project") is not None:
            project = projects.get(event["project"]) if isinstance(event["project"], str) else None
            if project is None or (tenant is not None and project.tenant_id != tenant.pk):
                problems.add(
                    f"{at}.project",
                    f"Tenant {tenant.public_id if tenant else '?'} has no project "
                    f"'{str(event['project'])[:64]}'.",
                )
                project = None
        task = event.get("task", "")
        if not isinstance(task, str) or len(task) > 64:
            problems.add(f"{at}.task", "Give the task's name (at most 64 characters).")
            task = ""
        details = event.get("details", {})
        if not isinstance(details, dict) or len(json.dumps(details, default=str)) > 2000:
            problems.add(f"{at}.details", "Give a JSON object of at most 2000 characters.")
            details = {}
        if tenant is not None and quantity is not None and key is not None:
            items.append(
                (
                    tenant,
                    metering.Usage(
                        meter=meter,
                        quantity=quantity,
                        idempotency_key=key,
                        project=project,
                        task=task,
                        details=details,
                        occurred_at=occurred,
                        route="external",
                    ),
                )
            )
    by_tenant: dict[int, Tenant] = {}
    for tenant, _ in items:
        by_tenant[tenant.pk] = tenant
    return UsageBatch(problems=problems.as_dict(), tenants=by_tenant, items=items)


def usage_events_record(
    *, batch: UsageBatch, source: str
) -> list[tuple[Tenant, metering.Usage, bool]]:
    """Record a checked batch, all tenants' events or none: each event with whether it was new
    (False: its key was recorded before), in the order sent."""
    if batch.problems:
        raise ValidationError(batch.problems)
    fresh: set[tuple[int, str]] = set()
    with transaction.atomic():
        for tenant_pk, tenant in batch.tenants.items():
            mine = [usage for owner, usage in batch.items if owner.pk == tenant_pk]
            with tenant_context(tenant):
                fresh.update(
                    (tenant_pk, key) for key in metering.record(tenant, mine, source=source)
                )
    # One tenant's key may be another's too: each event is listed once.
    return [
        (owner, usage, (owner.pk, usage.idempotency_key) in fresh) for owner, usage in batch.items
    ]
