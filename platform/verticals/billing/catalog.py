"""The meter catalog (from code) and the plans a tenant is on."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from verticals.billing.models import CatalogVersion, Contract, Meter, Plan, Subscription
from verticals.sdk import discovery


def sync_meters(**_) -> None:
    """Create or update a Meter row for core's meters and every installed plugin's."""
    for key, (meter, owner) in discovery.meters().items():
        Meter.objects.update_or_create(
            key=key,
            defaults={
                "name": meter.name,
                "unit": meter.unit,
                "description": meter.description,
                "declared_by": owner,
            },
        )


def sync_meters_after_migrate(**_) -> None:
    sync_meters()


def meter_keys() -> frozenset[str]:
    return discovery.meter_keys()


# --- billing periods ------------------------------------------------------------------------


def _anchor(year: int, month: int, day: int, seconds: int = 0) -> datetime:
    """The anchor in that month: its day (the month's last when shorter), at `seconds` past midnight UTC."""
    return datetime(
        year, month, min(day, calendar.monthrange(year, month)[1]), tzinfo=UTC
    ) + timedelta(seconds=seconds)


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def period_of(
    at: datetime, anchor_day: int = 1, anchor_seconds: int = 0
) -> tuple[datetime, datetime]:
    """The monthly billing period [start, end) that holds `at`, starting on `anchor_day` at
    `anchor_seconds` past midnight (UTC)."""
    at = at.astimezone(UTC)
    year, month = at.year, at.month
    if at < _anchor(year, month, anchor_day, anchor_seconds):
        year, month = _add_months(year, month, -1)
    start = _anchor(year, month, anchor_day, anchor_seconds)
    end = _anchor(*_add_months(year, month, 1), anchor_day, anchor_seconds)
    return start, end


def previous_period(
    start: datetime, anchor_day: int = 1, anchor_seconds: int = 0
) -> tuple[datetime, datetime]:
    return period_of(start - timedelta(microseconds=1), anchor_day, anchor_seconds)


def subscription_period(subscription: Subscription, at: datetime) -> tuple[datetime, datetime]:
    return period_of(at, subscription.anchor_day, subscription.anchor_seconds)


# --- what a tenant is on --------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A stretch of a billing period with one subscription and one contract (or none): what
    invoices prorate and what a hard cap is counted over. A period splits where a subscription
    or a contract starts or ends."""

    start: datetime
    end: datetime
    subscription: Subscription
    contract: Contract | None
    period: tuple[datetime, datetime]

    @property
    def share(self) -> Decimal:
        """The segment's part of its period (exact)."""
        return share_of(self.start, self.end, self.period)

    def included(self, meter: str) -> Decimal | None:
        """Units of `meter` included per whole period: the contract's, else the plan's; None when
        neither prices it (not limited)."""
        if self.contract is not None:
            for price in self.contract.prices.all():
                if price.meter_id == meter and price.included is not None:
                    return price.included
        for price in self.subscription.plan.prices.all():
            if price.meter_id == meter:
                return price.included
        return None

    def allowance(self, meter: str) -> Decimal | None:
        """Units included in this segment: the period's, prorated by its share, to 6 decimals
        (what the invoice line of the segment includes)."""
        included = self.included(meter)
        return None if included is None else prorate(included, self.share)

    def meters(self) -> list[str]:
        found = {price.meter_id for price in self.subscription.plan.prices.all()}
        if self.contract is not None:
            found |= {
                price.meter_id for price in self.contract.prices.all() if price.included is not None
            }
        return sorted(found)


def share_of(start: datetime, end: datetime, period: tuple[datetime, datetime]) -> Decimal:
    """The part of `period` that [start, end) covers (exact; 0 when it is empty)."""
    whole = Decimal(int((period[1] - period[0]).total_seconds()))
    part = Decimal(max(0, int((end - start).total_seconds())))
    return part / whole


def prorate(units: Decimal, share: Decimal) -> Decimal:
    return (units * share).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def segments(tenant, period: tuple[datetime, datetime]) -> list[Segment]:
    """The period's segments, in order (none where the tenant had no subscription)."""
    start, end = period
    subs = list(
        Subscription.dangerously_unscoped.filter(  # filtered by the tenant given
            tenant_id=tenant.pk, starts_at__lt=end
        )
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=start))
        .select_related("plan")
        .prefetch_related("plan__prices")
        .order_by("starts_at", "pk")
    )
    if not subs:
        return []
    contracts = list(
        Contract.dangerously_unscoped.filter(  # filtered by the tenant given
            tenant_id=tenant.pk, starts_at__lt=end
        )
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=start))
        .prefetch_related("prices")
        .order_by("starts_at", "pk")
    )
    cuts = {start, end}
    for row in [*subs, *contracts]:
        cuts |= {
            moment
            for moment in (row.starts_at, row.ends_at)
            if moment is not None and start < moment < end
        }
    ordered = sorted(cuts)
    found = []
    for left, right in pairwise(ordered):
        sub = next(
            (
                s
                for s in reversed(subs)
                if s.starts_at <= left and (s.ends_at is None or s.ends_at > left)
            ),
            None,
        )
        if sub is None:
            continue
        contract = next(
            (
                c
                for c in reversed(contracts)
                if c.starts_at <= left and (c.ends_at is None or c.ends_at > left)
            ),
            None,
        )
        found.append(Segment(left, right, sub, contract, period))
    return found


@dataclass
class Standing:
    """A tenant's plan now: its subscription, and the segment of the period it is in (read per
    metered call, remembered briefly). Hard caps count usage over the segment against its allowance."""

    subscription: Subscription
    plan: Plan
    segment: Segment

    @property
    def period(self) -> tuple[datetime, datetime]:
        return self.segment.period

    def meters(self) -> list[str]:
        """Meters the plan (or the contract) limits."""
        return self.segment.meters()

    def included(self, meter: str) -> Decimal | None:
        """Units of `meter` this segment includes (None: not limited)."""
        return self.segment.allowance(meter)


_standing: dict[
    int, tuple[str, Standing | None, datetime | None]
] = {}  # pk -> (public id, standing, valid until)
_seen = {"version": None, "checked": float("-inf"), "forgotten": 0}


def forget_standing(tenant=None) -> None:
    """Drop what this process remembers of a tenant's plan (of every tenant's with None). A read
    that began before this is not remembered either."""
    _seen["forgotten"] += 1
    if tenant is None:
        _standing.clear()
    else:
        _standing.pop(tenant.pk, None)


def catalog_changed(**_) -> None:
    """A plan, a price, a subscription or a contract changed: this process forgets every tenant's
    plan at once, and the others when they next check the catalog's version (raised inside the
    change's transaction when it has one)."""

    forget_standing(None)
    if not CatalogVersion.objects.filter(pk=1).update(version=F("version") + 1):
        CatalogVersion.objects.bulk_create([CatalogVersion(pk=1, version=1)], ignore_conflicts=True)


def _check_catalog() -> None:
    """Every BILLING_PLAN_CACHE_SECONDS, one read of the catalog's version; when it moved, forget."""

    now = time.monotonic()
    if now - _seen["checked"] < settings.BILLING_PLAN_CACHE_SECONDS:
        return
    version = CatalogVersion.objects.filter(pk=1).values_list("version", flat=True).first()
    if version != _seen["version"]:
        forget_standing(None)
        _seen["version"] = version
    _seen["checked"] = now


def standing(tenant) -> Standing | None:
    """The tenant's open subscription with its plan and prices, or None (not subscribed: no plan
    limits). Read on every metered call, so each process remembers it until its segment of the
    period ends or the catalog changes: at once in the process that changed it, within
    BILLING_PLAN_CACHE_SECONDS in the others (0: read every time)."""
    if settings.BILLING_PLAN_CACHE_SECONDS <= 0:
        return _read_standing(tenant)
    _check_catalog()
    cached = _standing.get(tenant.pk)
    if (
        cached is not None
        and cached[0] == tenant.public_id
        and (cached[2] is None or timezone.now() < cached[2])
    ):
        return cached[1]
    forgotten = _seen["forgotten"]
    found = _read_standing(tenant)
    until = found.segment.end if found is not None else _next_subscription_start(tenant)
    if _seen["forgotten"] == forgotten:
        # nothing changed while it was read (else: read again next time)
        _standing[tenant.pk] = (tenant.public_id, found, until)
    return found


def _next_subscription_start(tenant) -> datetime | None:
    """When a tenant without a plan now gets one by the clock alone (a subscription that starts later)."""
    return (
        Subscription.dangerously_unscoped.filter(
            tenant_id=tenant.pk, starts_at__gt=timezone.now()
        )  # the given tenant's
        .order_by("starts_at")
        .values_list("starts_at", flat=True)
        .first()
    )


def _read_standing(tenant) -> Standing | None:
    subscription = (
        Subscription.dangerously_unscoped.filter(  # filtered by the tenant given
            tenant_id=tenant.pk, ends_at__isnull=True
        )
        .only("anchor_day", "anchor_seconds")
        .first()
    )
    if subscription is None:
        return None
    now = timezone.now()
    current = next(
        (
            seg
            for seg in segments(tenant, subscription_period(subscription, now))
            if seg.start <= now < seg.end
        ),
        None,
    )
    if current is None:  # it starts later than now (not offered: subscriptions start when made)
        return None
    return Standing(current.subscription, current.subscription.plan, current)
