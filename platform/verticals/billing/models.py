"""Billing: the meter catalog, plans, partner price books, contracts, subscriptions, the usage
ledger, quota counters and invoices (retail, wholesale, credit notes)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from verticals.billing.money import CURRENCY_CHOICES, QuantityField, format_money, price_field
from verticals.tenancy.ids import PublicIdField
from verticals.tenancy.scoping import TenantOwnedModel, UnscopedManager

meter_key = RegexValidator(
    r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$",
    "A meter key is dotted lower case, e.g. speech.audio_seconds.",
)
plan_code = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,39}$", "A plan code is lower case letters, digits and dashes."
)


class Meter(models.Model):
    """A billable unit of work. Core declares its own; plugins declare theirs through the SDK."""

    key = models.CharField(max_length=64, unique=True, validators=[meter_key])
    name = models.CharField(max_length=120)
    unit = models.CharField(
        max_length=32, help_text="Singular unit: request, token, image, second, GB-day."
    )
    description = models.CharField(max_length=300, blank=True)
    declared_by = models.CharField(
        max_length=64, default="core", help_text="core, or the plugin that declares it."
    )

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class Plan(models.Model):
    """A SaaS plan at list price: the operator's catalog (its direct customers pay these prices)."""

    class Cap(models.TextChoices):
        HARD = "hard", "Hard cap: work stops when included units run out"
        SOFT = "soft", "Soft cap: work goes on and is billed as overage"

    public_id = PublicIdField(prefix="pln")
    code = models.CharField(max_length=40, unique=True, validators=[plan_code])
    name = models.CharField(max_length=120)
    description = models.CharField(max_length=500, blank=True)
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES, default="USD")
    monthly_fee = price_field(default=0, validators=[MinValueValidator(0)])
    cap = models.CharField(max_length=4, choices=Cap.choices, default=Cap.SOFT)
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Metered calls per minute; empty: no limit."
    )
    concurrent_jobs = models.PositiveIntegerField(
        null=True, blank=True, help_text="Jobs running at once; empty: the platform default."
    )
    max_model_versions = models.PositiveIntegerField(
        null=True, blank=True, help_text="Model versions kept; empty: no limit."
    )
    enabled_tasks = models.JSONField(
        default=list, blank=True, help_text="Task names; empty: every installed task."
    )
    is_active = models.BooleanField(default=True, help_text="Offered for new subscriptions.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["monthly_fee", "code"]

    def __str__(self) -> str:
        return self.name

    def allows_task(self, task: str) -> bool:
        return not self.enabled_tasks or task in self.enabled_tasks


class PlanPrice(models.Model):
    """Included units and the overage unit price of one meter on a plan (list prices)."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="prices")
    meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, to_field="key", db_column="meter", related_name="+"
    )
    included = QuantityField(default=0)
    unit_price = price_field(default=0, validators=[MinValueValidator(0)])

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "meter"], name="one_price_per_plan_meter")
        ]
        ordering = ["meter"]


FEE = "plan.fee"  # the price-book item of a plan's monthly fee


class PriceBook(models.Model):
    """A channel partner's prices: wholesale (operator -> partner) and retail (partner -> its tenants)."""

    public_id = PublicIdField(prefix="pbk")
    partner = models.OneToOneField(
        "tenancy.Partner", on_delete=models.CASCADE, related_name="price_book"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Price book of {self.partner}"


class PriceBookEntry(models.Model):
    """One item of a plan in a price book: `plan.fee` (the monthly fee) or a meter's overage unit
    price. The operator sets the wholesale price; the partner sets retail, never below it."""

    price_book = models.ForeignKey(PriceBook, on_delete=models.CASCADE, related_name="entries")
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="+")
    item = models.CharField(max_length=64, help_text="plan.fee, or a meter key.")
    wholesale = price_field(validators=[MinValueValidator(0)])
    retail = price_field(
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="Empty: the plan's list price (never below wholesale).",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["price_book", "plan", "item"], name="one_entry_per_book_plan_item"
            ),
            models.CheckConstraint(
                condition=Q(retail__isnull=True) | Q(retail__gte=F("wholesale")),
                name="retail_not_below_wholesale",
            ),
            models.CheckConstraint(condition=Q(wholesale__gte=0), name="wholesale_not_negative"),
        ]
        ordering = ["plan", "item"]

    def clean(self):
        if self.retail is not None and self.wholesale is not None and self.retail < self.wholesale:
            raise ValidationError(
                {
                    "retail": f"The retail price {self.retail} is below the wholesale price {self.wholesale}."
                }
            )


class Subscription(TenantOwnedModel):
    """A tenant on a plan from `starts_at` until `ends_at`. A plan change ends one row and starts
    the next at the same instant; each is billed for its share of the period (prorated)."""

    class Status(models.TextChoices):
        TRIALING = "trialing", "Trialing"
        ACTIVE = "active", "Active"
        ENDED = "ended", "Ended"

    public_id = PublicIdField(prefix="sub")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    anchor_day = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(31)],
        help_text="Day of the month each billing period starts (UTC; a shorter "
        "month's last day when it has no such day).",
    )
    anchor_seconds = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(86399)],
        help_text="Seconds past midnight UTC the periods start at.",
    )
    trial_ends_at = models.DateTimeField(null=True, blank=True)
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-starts_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant"],
                condition=Q(ends_at__isnull=True),
                name="one_open_subscription_per_tenant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} on {self.plan_id}"

    def status_at(self, now=None) -> str:
        now = now or timezone.now()
        if self.ends_at is not None and self.ends_at <= now:
            return self.Status.ENDED
        if self.trial_ends_at is not None and self.trial_ends_at > now:
            return self.Status.TRIALING
        return self.Status.ACTIVE

    @property
    def status(self) -> str:
        return self.status_at()


class Contract(TenantOwnedModel):
    """A negotiated deal (a custom solution): its prices override the tenant's retail prices."""

    public_id = PublicIdField(prefix="ctr")
    name = models.CharField(max_length=120)
    monthly_fee = price_field(
        null=True, blank=True, validators=[MinValueValidator(0)], help_text="Empty: the plan's fee."
    )
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-starts_at", "-pk"]

    def __str__(self) -> str:
        return self.name


class ContractPrice(models.Model):
    contract = models.ForeignKey(Contract, on_delete=models.CASCADE, related_name="prices")
    meter = models.ForeignKey(
        Meter, on_delete=models.PROTECT, to_field="key", db_column="meter", related_name="+"
    )
    included = QuantityField(null=True, blank=True, help_text="Empty: the plan's included units.")
    unit_price = price_field(validators=[MinValueValidator(0)])

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contract", "meter"], name="one_price_per_contract_meter"
            )
        ]


class UsageEvent(TenantOwnedModel):
    """One billable unit of work, counted once: unique on (tenant, source, idempotency key).

    Written by serving (requests, tokens, images), the job runner (CPU/GPU seconds), the daily
    storage snapshot and staff-run external sources. Never edited; invoices read sums of it.
    """

    id = models.BigAutoField(primary_key=True)
    project = models.ForeignKey(
        "tenancy.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    meter = models.CharField(max_length=64)
    quantity = QuantityField()
    task = models.CharField(max_length=64, blank=True)
    model = models.CharField(
        max_length=100,
        blank=True,
        help_text="The model id the call named (kept when the model is deleted).",
    )
    api_key = models.ForeignKey(
        "tenancy.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        "tenancy.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(
        max_length=64, help_text="serving, jobs, storage, or external:<name>."
    )
    route = models.CharField(
        max_length=40, blank=True, help_text="predict, predict.stream, openai.chat, job.train …"
    )
    idempotency_key = models.CharField(max_length=200)
    details = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "source", "idempotency_key"], name="usage_event_counted_once"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "occurred_at", "meter"], name="usage_tenant_time_meter")
        ]

    def __str__(self) -> str:
        return f"{self.quantity} {self.meter}"

    # The generation breakdown (textgen.tokens): what the quantity is made of.
    @property
    def prompt_tokens(self) -> int:
        return self.details.get("prompt_tokens", 0)

    @property
    def completion_tokens(self) -> int:
        return self.details.get("completion_tokens", 0)

    @property
    def finish_reason(self) -> str:
        return self.details.get("finish_reason", "")


class UsageCounter(TenantOwnedModel):
    """Units of a meter used (or reserved by work in flight) in a billing period: what a hard cap
    is checked against, atomically. The ledger is the truth; this is its running sum."""

    meter = models.CharField(max_length=64)
    period_start = models.DateTimeField()
    quantity = QuantityField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "meter", "period_start"], name="one_counter_per_period"
            )
        ]


class CatalogVersion(models.Model):
    """One row whose number goes up with every change to plans, their prices, subscriptions and
    contracts: each process checks it every BILLING_PLAN_CACHE_SECONDS and, when it moved, forgets
    the tenants' plans it remembers (catalog.standing)."""

    version = models.BigIntegerField(default=0)


class RateWindow(models.Model):
    """Metered calls a tenant made in one minute: the rate limit's atomic counter."""

    tenant = models.ForeignKey("tenancy.Tenant", on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "window_start"], name="one_rate_window")
        ]


class Issued(models.Model):
    """Written once: an issued invoice and its lines are never changed or deleted (a correction is a credit note).

    A retail invoice carries its tenant; a wholesale one bills a partner and carries none; a line
    is its invoice's. `objects` gives what the database lets through (row-level security): the
    current tenant's invoices, a partner console's tenants' and its own (partner_scope), every one
    in a platform scope (the close, staff) or through `dangerously_unscoped`."""

    objects = models.Manager()
    dangerously_unscoped = UnscopedManager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError(
                f"An issued {self._meta.verbose_name} is never changed: issue a credit note instead."
            )
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError(
            f"An issued {self._meta.verbose_name} is never deleted: issue a credit note instead."
        )


class Invoice(Issued):
    """An issued invoice: never changed once written (a correction is a credit note).

    retail: a partner (or the operator) bills one tenant; wholesale: the operator bills a partner
    for its tenants' plans and usage; credit_note: takes back (part of) an invoice.
    """

    class Kind(models.TextChoices):
        RETAIL = "retail", "Retail"
        WHOLESALE = "wholesale", "Wholesale"
        CREDIT_NOTE = "credit_note", "Credit note"

    public_id = PublicIdField(prefix="invc")
    number = models.CharField(
        max_length=64, unique=True, help_text="In the series of its issuer, billed party and year."
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    issuer = models.ForeignKey(
        "tenancy.Partner", on_delete=models.PROTECT, related_name="issued_invoices"
    )
    tenant = models.ForeignKey(
        "tenancy.Tenant", null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    partner = models.ForeignKey(
        "tenancy.Partner",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="wholesale_invoices",
        help_text="The billed partner (wholesale, and its credit notes).",
    )
    currency = models.CharField(max_length=3, choices=CURRENCY_CHOICES)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    total_minor = models.BigIntegerField(help_text="Sum of the lines, in minor units.")
    retail_total_minor = models.BigIntegerField(
        null=True,
        blank=True,
        help_text="Wholesale: what the partner billed its tenants for the same lines.",
    )
    credits = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_notes"
    )
    reason = models.CharField(max_length=500, blank=True)
    brand = models.JSONField(
        default=dict, blank=True, help_text="The issuer's brand as it was at issue."
    )
    bill_to = models.JSONField(default=dict, blank=True)
    issued_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-issued_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "period_start", "currency"],
                condition=Q(kind="retail"),
                name="one_retail_invoice_per_period",
            ),
        ]
        indexes = [models.Index(fields=["kind", "period_start"], name="invoice_kind_period")]

    def __str__(self) -> str:
        return self.number

    @property
    def total(self) -> str:
        return format_money(self.total_minor, self.currency)

    @property
    def margin_minor(self) -> int | None:
        return (
            None if self.retail_total_minor is None else self.retail_total_minor - self.total_minor
        )


class InvoiceLine(Issued):
    # A line is its invoice's: a wholesale line names the tenant it bills for, but belongs to the
    # partner's invoice. Row-level security follows the invoice (verticals.tenancy.rls).
    row_security_through = "invoice"

    class Kind(models.TextChoices):
        FEE = "fee", "Plan fee"
        USAGE = "usage", "Usage"
        CREDIT = "credit", "Credit"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    description = models.CharField(max_length=300)
    tenant = models.ForeignKey(
        "tenancy.Tenant",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Wholesale: the tenant the line is for.",
    )
    plan = models.ForeignKey(
        Plan, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    meter = models.CharField(max_length=64, blank=True)
    quantity = QuantityField(
        default=0, help_text="Units used (usage) or the share of the period (fee)."
    )
    included = QuantityField(default=0)
    billable = QuantityField(default=0, help_text="Units charged: used beyond the included ones.")
    unit_price = price_field(default=0)
    amount_minor = models.BigIntegerField()
    # Retail lines of a partner's tenant: what the same line costs the partner (its wholesale invoice),
    # with the plan's included units (a contract with the tenant does not change the partner's price).
    wholesale_unit_price = price_field(null=True, blank=True)
    wholesale_included = QuantityField(null=True, blank=True)
    wholesale_billable = QuantityField(null=True, blank=True)
    wholesale_amount_minor = models.BigIntegerField(null=True, blank=True)
    # Wholesale lines: the retail invoice they bill the partner for (each is billed once).
    source = models.ForeignKey(
        "Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="billed_lines"
    )
    # Wholesale lines: what the partner billed its tenant for the same line.
    retail_amount_minor = models.BigIntegerField(null=True, blank=True)
    by_task = models.JSONField(
        default=dict,
        blank=True,
        help_text="Usage lines: units per task (strings), for revenue by task.",
    )

    class Meta:
        ordering = ["invoice", "position"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="one_line_per_position")
        ]


class InvoiceSequence(models.Model):
    """The last invoice number of a series: an issuer's invoices (and credit notes) to one billed
    tenant or partner in one year. Numbers run without gaps per series; the billed party sees no
    other series, so it cannot count the issuer's invoices to others."""

    issuer = models.ForeignKey("tenancy.Partner", on_delete=models.CASCADE, related_name="+")
    billed = models.CharField(
        max_length=32, default="", help_text="The public id of the billed tenant or partner."
    )
    year = models.PositiveIntegerField()
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["issuer", "billed", "year"], name="one_sequence_per_series_year"
            )
        ]
