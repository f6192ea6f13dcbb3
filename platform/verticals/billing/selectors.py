"""What the billing pages and routes read about a partner's business: its price book, row by row."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Q

from verticals.billing.analytics import meter_names
from verticals.billing.models import FEE, Plan, PriceBookEntry
from verticals.billing.pricing import book_items


@dataclass(frozen=True)
class PriceBookRow:
    """One priced item of a plan in a partner's book (the plan's fee, or a meter)."""

    plan: Plan
    item: str  # plan.fee, or a meter key
    name: str  # the meter's name ("" for the plan's fee: each page words it)
    unit: str  # the meter's unit ("" for the fee)
    included: Decimal | None  # meters: units included per period
    list_price: Decimal
    wholesale: Decimal | None  # what the partner pays the operator (None: the operator itself)
    retail_set: Decimal | None  # the partner's own price (None: the list price applies)
    retail: Decimal  # what its tenants pay

    @property
    def is_fee(self) -> bool:
        return self.item == FEE


def price_book_rows(*, partner, plans=None) -> list[PriceBookRow]:
    """The book of `partner` over `plans` (default: the plans offered and those its book prices),
    plan by plan (cheapest first), the fee then each meter."""
    if plans is None:
        priced = PriceBookEntry.objects.filter(price_book__partner=partner).values("plan_id")
        plans = Plan.objects.filter(Q(is_active=True) | Q(pk__in=priced))
    names = meter_names()
    rows = []
    for entry in book_items(
        partner, plans.prefetch_related("prices").order_by("monthly_fee", "code")
    ):
        meter = None if entry.item == FEE else names.get(entry.item)
        rows.append(
            PriceBookRow(
                plan=entry.plan,
                item=entry.item,
                name=meter.name if meter else ("" if entry.item == FEE else entry.item),
                unit=meter.unit if meter else "",
                included=entry.included,
                list_price=entry.list_price,
                wholesale=entry.wholesale,
                retail_set=entry.retail_set,
                retail=entry.retail,
            )
        )
    return rows
