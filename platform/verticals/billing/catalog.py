"""The meter catalog (from code) and the plans a tenant is on."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from django.db.models import Q

from verticals.billing.models import ContractPrice, Meter, Plan, PlanPrice, Subscription


def sync_meters(**_) -> None:
    """Create or update a Meter row for core's meters and every installed plugin's."""
    from verticals.sdk import discovery

    for key, (meter, owner) in discovery.meters().items():
        Meter.objects.update_or_create(
            key=key, defaults={"name": meter.name, "unit": meter.unit, "description": meter.description, "declared_by": owner},
        )


def sync_meters_after_migrate(**_) -> None:
    sync_meters()


def meter_keys() -> frozenset[str]:
    from verticals.sdk import discovery

    return frozenset(discovery.meters())


# --- billing periods ------------------------------------------------------------------------

def _anchor(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, min(day, calendar.monthrange(year, month)[1]), tzinfo=dt_timezone.utc)


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def period_of(at: datetime, anchor_day: int = 1) -> tuple[datetime, datetime]:
    """The monthly billing period [start, end) that holds `at`, starting on `anchor_day` (UTC)."""
    at = at.astimezone(dt_timezone.utc)
    year, month = at.year, at.month
    if at < _anchor(year, month, anchor_day):
        year, month = _add_months(year, month, -1)
    start = _anchor(year, month, anchor_day)
    end = _anchor(*_add_months(year, month, 1), anchor_day)
    return start, end


def previous_period(start: datetime, anchor_day: int) -> tuple[datetime, datetime]:
    return period_of(start - timedelta(seconds=1), anchor_day)


# --- what a tenant is on --------------------------------------------------------------------

@dataclass
class Standing:
    """A tenant's current subscription, plan and list prices, with its contract's included units
    where one overrides them (read per metered call, remembered briefly)."""

    subscription: Subscription
    plan: Plan
    prices: dict[str, PlanPrice]
    contracted: dict[str, Decimal] = field(default_factory=dict)

    @property
    def period(self) -> tuple[datetime, datetime]:
        return period_of(timezone.now(), self.subscription.anchor_day)

    def meters(self) -> list[str]:
        """Meters the plan (or the contract) limits."""
        return sorted(set(self.prices) | set(self.contracted))

    def included(self, meter: str) -> Decimal | None:
        """Units of `meter` included per period; None when neither plan nor contract prices it (unlimited)."""
        if meter in self.contracted:
            return self.contracted[meter]
        price = self.prices.get(meter)
        return None if price is None else price.included


_standing: dict[int, tuple[float, str, "Standing | None"]] = {}


def forget_standing(tenant=None) -> None:
    """Drop what this process remembers of a tenant's plan (of every tenant's with None)."""
    if tenant is None:
        _standing.clear()
    else:
        _standing.pop(tenant.pk, None)


def forget_every_standing(**_) -> None:
    forget_standing(None)


def standing(tenant) -> Standing | None:
    """The tenant's open subscription with its plan and prices, or None (not subscribed: no plan
    limits). Read on every metered call, so each process remembers it BILLING_PLAN_CACHE_SECONDS
    (a change made in this process applies at once; one made elsewhere within that time)."""
    ttl = settings.BILLING_PLAN_CACHE_SECONDS
    now = time.monotonic()
    if ttl > 0:
        cached = _standing.get(tenant.pk)
        if cached is not None and cached[0] > now and cached[1] == tenant.public_id:
            return cached[2]
    found = _read_standing(tenant)
    if ttl > 0:
        _standing[tenant.pk] = (now + ttl, tenant.public_id, found)
    return found


def _read_standing(tenant) -> Standing | None:
    subscription = (
        Subscription.dangerously_unscoped  # filtered by the tenant given
        .filter(tenant_id=tenant.pk, ends_at__isnull=True).select_related("plan").first()
    )
    if subscription is None:
        return None
    prices = {price.meter_id: price for price in subscription.plan.prices.all()}
    now = timezone.now()
    contracted = dict(
        ContractPrice.objects.filter(contract__tenant_id=tenant.pk, contract__starts_at__lte=now, included__isnull=False)
        .filter(Q(contract__ends_at__isnull=True) | Q(contract__ends_at__gt=now)).values_list("meter_id", "included"))
    return Standing(subscription, subscription.plan, prices, contracted)
