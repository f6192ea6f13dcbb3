"""Subscriptions, plan changes, price books, contracts and a partner's new tenants: the writes the API
and portal make. Each write that changes what a tenant or a partner sees takes the actor and records
its audit row (the tenant's log, the partner's trail) inside its own transaction."""

from __future__ import annotations

from datetime import UTC, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from verticals.billing.catalog import forget_standing, meter_keys
from verticals.billing.models import (
    FEE,
    Contract,
    ContractPrice,
    Plan,
    PriceBook,
    PriceBookEntry,
    Subscription,
)
from verticals.billing.money import PRICE_PLACES, MoneyError, as_decimal, check_price_digits
from verticals.tenancy.audit import audit_record, partner_audit_record
from verticals.tenancy.scoping import for_tenant, tenant_context
from verticals.tenancy.services import tenant_create


def _price(value, field: str) -> Decimal:
    try:
        number = as_decimal(value, field=field, places=PRICE_PLACES)
    except MoneyError as exc:
        raise ValidationError({field: str(exc).split(": ", 1)[-1]}) from None
    if number < 0:
        raise ValidationError({field: "A price is never negative."})
    try:
        check_price_digits(number)
    except ValidationError as exc:
        raise ValidationError({field: exc.messages[0]}) from None
    return number


@for_tenant
def subscribe(
    tenant, plan: Plan, *, anchor_day: int | None = None, trial_days: int = 0, actor=None, now=None
) -> Subscription:
    """Put a tenant on a plan.

    A first subscription starts a whole period now: its periods are anchored at this moment (or,
    with `anchor_day`, on that day at midnight UTC, the first period then prorated). A plan change
    keeps the periods and splits the current one (both plans prorated on the invoice, and each
    counts its own share of the included units against a hard cap)."""
    now = now or timezone.now()
    if not plan.is_active:
        raise ValidationError({"plan": f"The plan '{plan.code}' is no longer offered."})
    if anchor_day is not None and not 1 <= anchor_day <= 31:
        raise ValidationError({"anchor_day": "Give a day of the month from 1 to 31."})
    if not 0 <= trial_days <= 365:
        raise ValidationError({"trial_days": "Give 0 to 365 days."})
    try:
        with transaction.atomic():
            current = (
                Subscription.dangerously_unscoped.select_for_update()  # the given tenant's, locked for the change
                .filter(tenant_id=tenant.pk, ends_at__isnull=True)
                .select_related("plan")
                .first()
            )
            if current is not None:
                if current.plan_id == plan.pk:
                    raise ValidationError(
                        {"plan": f"The tenant is already on the plan '{plan.code}'."}
                    )
                if current.plan.currency != plan.currency:
                    raise ValidationError(
                        {
                            "plan": f"The plan '{plan.code}' bills in {plan.currency}, the current plan in "
                            f"{current.plan.currency}; a change keeps the currency."
                        }
                    )
                if anchor_day is not None and anchor_day != current.anchor_day:
                    raise ValidationError(
                        {
                            "anchor_day": "A plan change keeps the billing periods; the anchor day stays "
                            f"{current.anchor_day}."
                        }
                    )
                # the row locked above
                Subscription.dangerously_unscoped.filter(pk=current.pk).update(ends_at=now)
                anchor = (current.anchor_day, current.anchor_seconds)
            elif anchor_day is not None:
                anchor = (anchor_day, 0)
            else:
                moment = now.astimezone(UTC)
                anchor = (moment.day, moment.hour * 3600 + moment.minute * 60 + moment.second)
                now = now.replace(microsecond=0)  # the period starts on a whole second
            subscription = Subscription.dangerously_unscoped.create(  # for the tenant given (partner staff act from outside it)
                tenant=tenant,
                plan=plan,
                anchor_day=anchor[0],
                anchor_seconds=anchor[1],
                starts_at=now,
                trial_ends_at=now + timedelta(days=trial_days) if trial_days else None,
            )
            audit_record(
                tenant=tenant,
                actor=actor,
                action="subscription.change",
                target=subscription,
                details={"plan": plan.code, "previous": current.plan.code if current else None},
            )
    except IntegrityError:  # a concurrent change won
        raise ValidationError(
            {"plan": "The plan was changed at the same moment; reload and try again."}
        ) from None
    finally:
        forget_standing(tenant)
    return subscription


def subscription_change(
    *, tenant, plan: Plan, actor, trial_days: int = 0, partner=None
) -> Subscription:
    """Put `tenant` on `plan` (a first plan, or a change prorated on its invoice), asked by the
    tenant or, with `partner`, by partner staff in that partner's console: the tenant's log
    records it (`subscribe`), and the partner's trail too, in the same transaction."""
    with transaction.atomic():
        subscription = subscribe(tenant, plan, trial_days=trial_days, actor=actor)
        if partner is not None:
            partner_audit_record(
                partner=partner,
                actor=actor,
                action="tenant.plan.change",
                target=tenant,
                details={"plan": plan.code, "trial_days": trial_days},
            )
    return subscription


def partner_tenant_create(
    *,
    partner,
    name: str,
    actor,
    owner_email: str | None = None,
    plan: Plan | None = None,
    trial_days: int = 0,
):
    """A partner's new customer tenant, its owner's invitation and (with `plan`) its subscription,
    together or not at all; the tenant's log and the partner's trail record it."""
    with transaction.atomic():
        tenant = tenant_create(partner=partner, name=name, owner_email=owner_email, actor=actor)
        if plan is not None:
            with tenant_context(tenant):
                subscribe(tenant, plan, trial_days=trial_days, actor=actor)
        partner_audit_record(
            partner=partner,
            actor=actor,
            action="tenant.create",
            target=tenant,
            details={"name": name, "plan": plan.code if plan else None},
        )
    return tenant


def price_book_of(partner) -> PriceBook:
    book, _ = PriceBook.objects.get_or_create(partner=partner)
    return book


def _item_of(plan: Plan, item: str) -> str:
    if item != FEE and not plan.prices.filter(meter_id=item).exists():
        raise ValidationError(
            {
                "item": f"The plan '{plan.code}' does not price '{item}'; items are {FEE} and "
                f"{', '.join(plan.prices.values_list('meter_id', flat=True)) or 'no meter'}."
            }
        )
    return item


def set_wholesale(partner, plan: Plan, item: str, wholesale) -> PriceBookEntry:
    """The operator's price to a partner (staff only). A retail price below it is raised to it."""
    if partner.parent_id is None:
        raise ValidationError(
            {"partner": "The operator has no wholesale prices: it sells at list price."}
        )
    wholesale = _price(wholesale, "wholesale")
    book = price_book_of(partner)
    with transaction.atomic():
        entry, _ = PriceBookEntry.objects.select_for_update().get_or_create(
            price_book=book, plan=plan, item=_item_of(plan, item), defaults={"wholesale": wholesale}
        )
        entry.wholesale = wholesale
        if entry.retail is not None and entry.retail < wholesale:
            entry.retail = wholesale
        entry.save()
    return entry


def set_retail(partner, plan: Plan, item: str, retail) -> PriceBookEntry:
    """The partner's price to its tenants: never below what it pays (wholesale)."""
    if partner.parent_id is None:
        raise ValidationError(
            {"partner": "The operator's retail prices are the plans' list prices."}
        )
    book = price_book_of(partner)
    item = _item_of(plan, item)
    retail = None if retail in (None, "") else _price(retail, "retail")
    with transaction.atomic():
        entry = (
            PriceBookEntry.objects.select_for_update()
            .filter(price_book=book, plan=plan, item=item)
            .first()
        )
        wholesale = entry.wholesale if entry else list_price(plan, item)
        if retail is not None and retail < wholesale:
            raise ValidationError(
                {
                    "retail": f"{retail} is below the wholesale price {wholesale} of {item} on '{plan.code}'; "
                    "a retail price may not be lower."
                }
            )
        if entry is None:
            entry = PriceBookEntry(price_book=book, plan=plan, item=item, wholesale=wholesale)
        entry.retail = retail
        entry.save()
    return entry


def price_book_set_retail(*, partner, plan: Plan, item: str, retail, actor) -> PriceBookEntry:
    """A partner sets (or, with None, clears) its retail price of one item: `set_retail`'s rules,
    and the partner's trail records the change in the same transaction."""
    with transaction.atomic():
        entry = set_retail(partner, plan, item, retail)
        partner_audit_record(
            partner=partner,
            actor=actor,
            action="price_book.retail",
            target=plan,
            details={
                "plan": plan.code,
                "item": entry.item,
                "retail": None if entry.retail is None else format(entry.retail.normalize(), "f"),
            },
        )
    return entry


def list_price(plan: Plan, item: str) -> Decimal:
    if item == FEE:
        return plan.monthly_fee
    price = plan.prices.filter(meter_id=item).first()
    return price.unit_price if price else Decimal(0)


@for_tenant
def contract_create(
    tenant,
    *,
    name: str,
    prices: dict,
    monthly_fee=None,
    starts_at=None,
    ends_at=None,
    notes: str = "",
    actor=None,
) -> Contract:
    """A negotiated deal: `prices` maps meter keys to {unit_price, included?}."""

    known = meter_keys()
    with transaction.atomic():
        contract = Contract.dangerously_unscoped.create(  # for the tenant given (staff act from outside it)
            tenant=tenant,
            name=name,
            monthly_fee=None if monthly_fee in (None, "") else _price(monthly_fee, "monthly_fee"),
            starts_at=starts_at or timezone.now(),
            ends_at=ends_at,
            notes=notes,
        )
        for meter, spec in prices.items():
            if meter not in known:
                raise ValidationError({"prices": f"Unknown meter '{meter}'."})
            included = spec.get("included")
            ContractPrice.objects.create(
                contract=contract,
                meter_id=meter,
                unit_price=_price(spec.get("unit_price"), meter),
                included=None if included in (None, "") else _price(included, f"{meter}.included"),
            )
        audit_record(
            tenant=tenant,
            actor=actor,
            action="contract.create",
            target=contract,
            details={"name": name},
        )
    return contract
