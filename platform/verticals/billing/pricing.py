"""What a tenant pays (retail) and what its partner pays the operator (wholesale), item by item.

Retail: the tenant's contract, else the partner's retail price, else the plan's list price
(never below wholesale). Wholesale (tenants of a channel partner only): the price book's
wholesale price, else the list price.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone

from verticals.billing.models import FEE, Contract, Plan, PriceBookEntry


def contract_at(tenant, at: datetime | None = None) -> Contract | None:
    """The tenant's negotiated deal in force at `at` (now by default), if any."""
    at = at or timezone.now()
    return (
        Contract.dangerously_unscoped.filter(  # filtered by the tenant given (partner staff and the close read it from outside)
            tenant_id=tenant.pk, starts_at__lte=at
        )
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=at))
        .prefetch_related("prices")
        .order_by("-starts_at", "-pk")
        .first()
    )


@dataclass(frozen=True)
class Prices:
    retail: Decimal
    wholesale: Decimal | None  # None: a direct customer of the operator (no wholesale leg)
    included: Decimal  # per whole period (fee items: 0): the contract's, else the plan's
    wholesale_included: Decimal = Decimal(0)  # the plan's: what the partner's price covers


def price_legs(
    entry: PriceBookEntry | None,
    list_price: Decimal,
    *,
    channel: bool,
    contracted: Decimal | None = None,
) -> tuple[Decimal, Decimal | None]:
    """(retail, wholesale) of one price-book item: the rule in the module's docstring."""
    wholesale = (entry.wholesale if entry else list_price) if channel else None
    if contracted is not None:
        return contracted, wholesale
    retail = entry.retail if entry and entry.retail is not None else list_price
    return (max(retail, wholesale) if wholesale is not None else retail), wholesale


@dataclass(frozen=True)
class BookItem:
    """One item of a partner's price book: a plan's fee or one of its meters."""

    plan: Plan
    item: str  # plan.fee or a meter key
    list_price: Decimal
    included: Decimal | None  # units per period (None: the fee)
    wholesale: Decimal | None  # None: the operator's own book (no wholesale leg)
    retail_set: Decimal | None  # the partner's price; None: the list price
    retail: Decimal  # what its tenants pay


def book_items(partner, plans) -> list[BookItem]:
    """The price book of `partner` over `plans` (prefetch their prices), item by item."""
    channel = partner.parent_id is not None
    entries = {
        (e.plan_id, e.item): e for e in PriceBookEntry.objects.filter(price_book__partner=partner)
    }
    found = []
    for plan in plans:
        items = [(FEE, plan.monthly_fee, None)] + [
            (p.meter_id, p.unit_price, p.included) for p in plan.prices.all()
        ]
        for item, list_price, included in items:
            entry = entries.get((plan.pk, item))
            retail, wholesale = price_legs(entry, list_price, channel=channel)
            found.append(
                BookItem(
                    plan,
                    item,
                    list_price,
                    included,
                    wholesale,
                    entry.retail if entry else None,
                    retail,
                )
            )
    return found


class PriceList:
    """The prices of one tenant on one plan (and contract), read once per invoice."""

    def __init__(self, tenant, plan: Plan, contract: Contract | None):
        self.plan, self.contract = plan, contract
        self.list_prices = {price.meter_id: price for price in plan.prices.all()}
        # the root partner is the operator itself
        self.channel = tenant.partner.parent_id is not None
        self.book = {}
        if self.channel:
            self.book = {
                entry.item: entry
                for entry in PriceBookEntry.objects.filter(
                    price_book__partner_id=tenant.partner_id, plan=plan
                )
            }
        self.contracted = (
            {price.meter_id: price for price in contract.prices.all()} if contract else {}
        )

    def _legs(
        self, item: str, list_price: Decimal, contracted: Decimal | None
    ) -> tuple[Decimal, Decimal | None]:
        return price_legs(
            self.book.get(item), list_price, channel=self.channel, contracted=contracted
        )

    def fee(self) -> Prices:
        contracted = self.contract.monthly_fee if self.contract else None
        retail, wholesale = self._legs(FEE, self.plan.monthly_fee, contracted)
        return Prices(retail, wholesale, Decimal(0))

    def meter(self, key: str) -> Prices:
        listed = self.list_prices.get(key)
        contract_price = self.contracted.get(key)
        planned = listed.included if listed else Decimal(0)
        included = planned
        if contract_price is not None and contract_price.included is not None:
            included = contract_price.included
        retail, wholesale = self._legs(
            key,
            listed.unit_price if listed else Decimal(0),
            contract_price.unit_price if contract_price else None,
        )
        return Prices(retail, wholesale, included, planned)
