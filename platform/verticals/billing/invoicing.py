"""Closing billing periods: retail invoices per tenant, wholesale invoices per partner, credit notes.

Quantities are summed in the database (one GROUP BY per subscription segment); each line's
amount is rounded once to the currency's minor unit and the total is the sum of the lines.
An issued invoice is never changed: corrections are credit notes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Sum
from django.utils import timezone

from verticals.billing import spool
from verticals.billing.catalog import period_of, previous_period, prorate, segments, share_of
from verticals.billing.models import (
    Invoice,
    InvoiceLine,
    InvoiceSequence,
    Meter,
    Subscription,
    UsageEvent,
)
from verticals.billing.money import QUANTITY_PLACES, format_money, from_minor, to_minor
from verticals.billing.pricing import PriceList
from verticals.tenancy.audit import audit_record
from verticals.tenancy.models import Partner, Tenant
from verticals.tenancy.scoping import for_tenant, platform_scope

log = logging.getLogger(__name__)
_Q = Decimal(1).scaleb(-QUANTITY_PLACES)
NUMBER_CODES = {
    Invoice.Kind.RETAIL: "INV",
    Invoice.Kind.WHOLESALE: "WHS",
    Invoice.Kind.CREDIT_NOTE: "CRN",
}


@dataclass
class Line:
    kind: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount_minor: int
    plan: object = None
    meter: str = ""
    included: Decimal = Decimal(0)
    billable: Decimal = Decimal(0)
    wholesale_unit_price: Decimal | None = None
    wholesale_included: Decimal | None = None
    wholesale_billable: Decimal | None = None
    wholesale_amount_minor: int | None = None
    tenant: object = None
    retail_amount_minor: int | None = None
    by_task: dict = field(default_factory=dict)
    source: object = None


def _brand(partner: Partner) -> dict:
    return {
        "name": partner.display_name,
        "colour": partner.brand_colour,
        "support_email": partner.support_email,
        "logo": partner.logo.name if partner.logo else "",
        "partner": partner.public_id,
    }


def _next_number(issuer: Partner, billed: Tenant | Partner, kind: str, at: datetime) -> str:
    """The next number of the series of `issuer`'s invoices to `billed` in `at`'s year.

    One series per issuer, billed party and year: numbers run without gaps in it, and a customer
    or partner sees only its own series, so its numbers tell nothing of how many invoices the
    issuer wrote to others. A number names the issuer (by a part of its public id) and the billed
    party (by its whole public id: numbers cannot collide across series).
    """
    billed_id = billed.public_id
    InvoiceSequence.objects.bulk_create(
        [InvoiceSequence(issuer=issuer, billed=billed_id, year=at.year)], ignore_conflicts=True
    )
    sequence = InvoiceSequence.objects.select_for_update().get(
        issuer=issuer, billed=billed_id, year=at.year
    )
    sequence.last += 1
    sequence.save(update_fields=["last"])
    issuer_part, billed_part = issuer.public_id.split("_", 1)[1][:6], billed_id.split("_", 1)[1]
    return f"{NUMBER_CODES[kind]}-{issuer_part}-{billed_part}-{at.year}-{sequence.last:04d}"


def _issue(
    *,
    kind: str,
    issuer: Partner,
    currency: str,
    period: tuple[datetime, datetime],
    lines: list[Line],
    tenant: Tenant | None = None,
    partner: Partner | None = None,
    credits: Invoice | None = None,
    reason: str = "",
    bill_to: dict | None = None,
) -> Invoice:
    """Write an invoice and its lines at once (the caller holds the transaction)."""
    now = timezone.now()
    total = sum(line.amount_minor for line in lines)
    retail_total = None
    if kind == Invoice.Kind.WHOLESALE:
        retail_total = sum(line.retail_amount_minor or 0 for line in lines)
    invoice = Invoice.objects.create(
        number=_next_number(issuer, tenant or partner, kind, now),
        kind=kind,
        issuer=issuer,
        tenant=tenant,
        partner=partner,
        currency=currency,
        period_start=period[0],
        period_end=period[1],
        total_minor=total,
        retail_total_minor=retail_total,
        credits=credits,
        reason=reason,
        brand=_brand(issuer),
        bill_to=bill_to or {},
        issued_at=now,
    )
    InvoiceLine.objects.bulk_create(
        [
            InvoiceLine(
                invoice=invoice,
                position=index,
                kind=line.kind,
                description=line.description[:300],
                tenant=line.tenant,
                plan=line.plan,
                meter=line.meter,
                quantity=line.quantity,
                included=line.included,
                billable=line.billable,
                unit_price=line.unit_price,
                amount_minor=line.amount_minor,
                wholesale_unit_price=line.wholesale_unit_price,
                wholesale_included=line.wholesale_included,
                wholesale_billable=line.wholesale_billable,
                source=line.source,
                wholesale_amount_minor=line.wholesale_amount_minor,
                retail_amount_minor=line.retail_amount_minor,
                by_task=line.by_task,
            )
            for index, line in enumerate(lines, start=1)
        ]
    )
    return invoice


# --- retail ---------------------------------------------------------------------------------


def usage_by_meter(
    tenant_id: int, start: datetime, end: datetime
) -> dict[str, tuple[Decimal, dict[str, Decimal]]]:
    """Units per meter in [start, end), with their split by task, summed by the database."""
    rows = (
        UsageEvent.dangerously_unscoped.filter(  # filtered by the tenant given
            tenant_id=tenant_id, occurred_at__gte=start, occurred_at__lt=end
        )
        .values("meter", "task")
        .annotate(total=Sum("quantity"))
        .order_by()
    )
    found: dict[str, tuple[Decimal, dict[str, Decimal]]] = {}
    for row in rows:
        total, tasks = found.get(row["meter"], (Decimal(0), {}))
        tasks[row["task"]] = row["total"]
        found[row["meter"]] = (total + row["total"], tasks)
    return found


def retail_lines(tenant: Tenant, period: tuple[datetime, datetime]) -> tuple[str, list[Line]]:
    """(currency, lines) of the tenant's invoice for `period`: per segment (a stretch with one plan
    and one contract), a fee line prorated by the segment's share and a usage line per meter with
    the included units prorated the same way — the allowance its hard cap counted against.

    The wholesale leg of a channel partner's tenant: the same units at wholesale prices, with the
    plan's included units (a contract the partner gave its tenant does not change what it owes),
    and the fee for the whole segment (a trial the partner gave is its own)."""
    found = segments(tenant, period)
    if not found:
        raise ValidationError(f"Tenant '{tenant.name}' had no subscription in the period.")
    currency = found[-1].subscription.plan.currency
    names = dict(Meter.objects.values_list("key", "name"))
    lines: list[Line] = []
    several = len(found) > 1
    for segment in found:
        start, end, plan = segment.start, segment.end, segment.subscription.plan
        if plan.currency != currency:
            raise ValidationError(
                f"Plan '{plan.code}' bills in {plan.currency}, the tenant's later plan in {currency}."
            )
        share = segment.share
        prices = PriceList(tenant, plan, segment.contract)
        when = f" ({start:%Y-%m-%d} – {end:%Y-%m-%d})" if several else ""
        trial_end = segment.subscription.trial_ends_at
        paid_from = min(max(start, trial_end), end) if trial_end else start
        paid_share = share_of(paid_from, end, period)
        fee = prices.fee()
        trial = " after the trial" if paid_from > start else ""
        lines.append(
            Line(
                kind=InvoiceLine.Kind.FEE,
                plan=plan,
                description=f"Plan {plan.name}{when}{trial}",
                quantity=prorate(Decimal(1), paid_share),
                unit_price=fee.retail,
                amount_minor=to_minor(fee.retail * paid_share, currency),
                wholesale_unit_price=fee.wholesale,
                wholesale_amount_minor=None
                if fee.wholesale is None
                else to_minor(fee.wholesale * share, currency),
            )
        )
        for meter, (used, tasks) in sorted(usage_by_meter(tenant.pk, start, end).items()):
            price = prices.meter(meter)
            included = prorate(price.included, share)
            billable = max(Decimal(0), used - included)
            wholesale_included = prorate(price.wholesale_included, share)
            wholesale_billable = max(Decimal(0), used - wholesale_included)
            lines.append(
                Line(
                    kind=InvoiceLine.Kind.USAGE,
                    plan=plan,
                    meter=meter,
                    description=f"{names.get(meter, meter)} ({meter}){when}",
                    quantity=used,
                    included=included,
                    billable=billable,
                    unit_price=price.retail,
                    amount_minor=to_minor(billable * price.retail, currency),
                    wholesale_unit_price=price.wholesale,
                    wholesale_included=None if price.wholesale is None else wholesale_included,
                    wholesale_billable=None if price.wholesale is None else wholesale_billable,
                    wholesale_amount_minor=None
                    if price.wholesale is None
                    else to_minor(wholesale_billable * price.wholesale, currency),
                    by_task={task: str(units) for task, units in tasks.items()},
                )
            )
    return currency, lines


@for_tenant
def issue_retail(tenant: Tenant, period: tuple[datetime, datetime]) -> Invoice | None:
    """The tenant's invoice for the period (None when it was issued before)."""
    currency, lines = retail_lines(tenant, period)
    try:
        with transaction.atomic():
            return _issue(
                kind=Invoice.Kind.RETAIL,
                issuer=tenant.partner,
                currency=currency,
                period=period,
                lines=lines,
                tenant=tenant,
                bill_to={"name": tenant.name, "tenant": tenant.public_id},
            )
    except IntegrityError:
        # issued meanwhile by another close (one retail invoice per tenant and period)
        return None


def ended_periods(tenant: Tenant, now: datetime) -> list[tuple[datetime, datetime]]:
    """The tenant's ended periods still to invoice, oldest first (at most BILLING_CLOSE_LOOKBACK back)."""
    # the given tenant's
    subs = list(Subscription.dangerously_unscoped.filter(tenant_id=tenant.pk).order_by("starts_at"))
    if not subs:
        return []
    anchor = (subs[-1].anchor_day, subs[-1].anchor_seconds)
    first_start = subs[0].starts_at
    periods = []
    period = previous_period(period_of(now, *anchor)[0], *anchor)
    for _ in range(settings.BILLING_CLOSE_LOOKBACK):
        if period[1] <= first_start:
            break
        if any(
            s.starts_at < period[1] and (s.ends_at is None or s.ends_at > period[0]) for s in subs
        ):
            periods.append(period)
        period = previous_period(period[0], *anchor)
    done = set(
        Invoice.objects.filter(kind=Invoice.Kind.RETAIL, tenant=tenant).values_list(
            "period_start", flat=True
        )
    )
    return [p for p in reversed(periods) if p[0] not in done]


# --- wholesale ------------------------------------------------------------------------------


def unbilled_retail(partner: Partner):
    """Its tenants' retail invoices that no wholesale invoice has billed yet."""
    billed = InvoiceLine.objects.filter(source=OuterRef("pk"))
    return (
        Invoice.objects.filter(kind=Invoice.Kind.RETAIL, tenant__partner=partner)
        .exclude(Exists(billed))
        .exclude(lines__wholesale_amount_minor__isnull=True)
    )


@platform_scope("a partner's wholesale invoice bills the retail invoices of all its tenants")
def issue_wholesale(partner: Partner) -> list[Invoice]:
    """The operator's invoices to `partner` for its tenants' retail invoices not billed to it yet:
    one per month (of the retail periods' ends) and currency. Each retail invoice is billed once,
    however late it was issued; a second close finds nothing left."""
    if not unbilled_retail(partner).exists():
        return []
    operator = partner.parent
    while operator.parent_id is not None:
        # the root partner (the operator) bills every channel partner
        operator = operator.parent
    issued = []
    with transaction.atomic():
        # one wholesale pass per partner at a time
        Partner.objects.select_for_update().filter(pk=partner.pk).first()
        groups: dict[tuple, list[Invoice]] = {}
        for invoice in (
            unbilled_retail(partner)
            .select_related("tenant")
            .prefetch_related("lines")
            .order_by("period_end", "tenant__name", "pk")
        ):
            month = period_of(invoice.period_end - timedelta(microseconds=1), 1)
            groups.setdefault((month, invoice.currency), []).append(invoice)
        for (_month, currency), invoices in sorted(
            groups.items(), key=lambda item: (item[0][0][0], item[0][1])
        ):
            lines = [
                Line(
                    kind=line.kind,
                    plan=line.plan,
                    meter=line.meter,
                    description=f"{invoice.tenant.name}: {line.description}",
                    quantity=line.quantity,
                    tenant=invoice.tenant,
                    by_task=line.by_task,
                    source=invoice,
                    included=line.wholesale_included
                    if line.wholesale_included is not None
                    else line.included,
                    billable=line.wholesale_billable
                    if line.wholesale_billable is not None
                    else line.billable,
                    unit_price=line.wholesale_unit_price,
                    amount_minor=line.wholesale_amount_minor,
                    retail_amount_minor=line.amount_minor,
                )
                for invoice in invoices
                for line in invoice.lines.all()
            ]
            period = (min(i.period_start for i in invoices), max(i.period_end for i in invoices))
            issued.append(
                _issue(
                    kind=Invoice.Kind.WHOLESALE,
                    issuer=operator,
                    currency=currency,
                    period=period,
                    lines=lines,
                    partner=partner,
                    bill_to={"name": partner.name, "partner": partner.public_id},
                )
            )
    return issued


# --- closing --------------------------------------------------------------------------------


@platform_scope("a billing close invoices every tenant and partner")
def close_period(now: datetime | None = None, tenants=None) -> list[Invoice]:
    """Issue every invoice whose period has ended by `now` (default: BILLING_CLOSE_GRACE_SECONDS ago,
    so that usage still on its way is on the invoice): retail first, then wholesale. A tenant that
    cannot be invoiced is logged and skipped; the others go on."""
    now = now or timezone.now() - timedelta(seconds=settings.BILLING_CLOSE_GRACE_SECONDS)
    _recover_spooled_usage()
    issued: list[Invoice] = []
    tenant_ids = Subscription.dangerously_unscoped.values_list(
        "tenant_id", flat=True
    ).distinct()  # every tenant's, by design
    candidates = Tenant.objects.filter(pk__in=tenant_ids).select_related("partner")
    if tenants is not None:
        candidates = candidates.filter(pk__in=[t.pk for t in tenants])
    for tenant in candidates:
        for period in ended_periods(tenant, now):
            try:
                invoice = issue_retail(tenant, period)
            except Exception:  # one tenant's problem never holds back the others' invoices
                log.exception(
                    "tenant %s period %s could not be invoiced", tenant.public_id, period[0]
                )
                continue
            if invoice is not None:
                issued.append(invoice)
    partners = Partner.objects.filter(parent__isnull=False)
    if tenants is not None:
        partners = partners.filter(pk__in={t.partner_id for t in tenants})
    for partner in partners:
        try:
            issued.extend(issue_wholesale(partner))
        except Exception:
            log.exception(
                "partner %s: the wholesale invoice could not be issued", partner.public_id
            )
    return issued


def _recover_spooled_usage() -> None:
    """Served calls' events that web processes on this machine left in their spools when they
    died go to the ledger before it is invoiced (best effort: a close never fails for it)."""

    try:
        spool.recover()
    except Exception:
        log.exception("the ledger spool's left events could not be written before the close")


# --- credit notes ---------------------------------------------------------------------------


def credited_minor(invoice: Invoice) -> int:
    return -(invoice.credit_notes.aggregate(total=Sum("total_minor"))["total"] or 0)


@platform_scope("staff credit any tenant's or partner's invoice")
def issue_credit_note(
    invoice: Invoice, *, reason: str, amount_minor: int | None = None, actor=None
) -> Invoice:
    """Take back `amount_minor` (default: all that is left) of an invoice, with the reason shown."""
    if invoice.kind == Invoice.Kind.CREDIT_NOTE:
        raise ValidationError(
            {"invoice": "A credit note is not credited; credit the invoice it corrects."}
        )
    if not reason.strip():
        raise ValidationError(
            {"reason": "Say why the invoice is credited; the reason is printed on the credit note."}
        )
    with transaction.atomic():
        # one credit at a time per invoice
        Invoice.objects.select_for_update().filter(pk=invoice.pk).first()
        left = invoice.total_minor - credited_minor(invoice)
        amount = left if amount_minor is None else amount_minor
        if amount <= 0 or amount > left:
            raise ValidationError(
                {
                    "amount": f"Give an amount above zero and at most {format_money(left, invoice.currency)} "
                    f"(what is left to credit on {invoice.number})."
                }
            )
        line = Line(
            kind=InvoiceLine.Kind.CREDIT,
            description=f"Credit on {invoice.number}: {reason.strip()}",
            quantity=Decimal(1),
            unit_price=-from_minor(amount, invoice.currency),
            amount_minor=-amount,
        )
        note = _issue(
            kind=Invoice.Kind.CREDIT_NOTE,
            issuer=invoice.issuer,
            currency=invoice.currency,
            period=(invoice.period_start, invoice.period_end),
            lines=[line],
            tenant=invoice.tenant,
            partner=invoice.partner,
            credits=invoice,
            reason=reason.strip(),
            bill_to=invoice.bill_to,
        )
        if invoice.tenant_id:  # a tenant's invoice: its audit log shows the correction
            audit_record(
                tenant=invoice.tenant,
                actor=actor,
                action="invoice.credit",
                target=note,
                details={
                    "invoice": invoice.number,
                    "amount": format_money(amount, invoice.currency),
                    "reason": reason.strip(),
                },
            )
        return note
