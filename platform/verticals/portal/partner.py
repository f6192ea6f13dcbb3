"""The partner console: a channel partner's customer tenants (usage, revenue, margin; create, change
plan, suspend, reactivate), its price book, its brand, its growth, its invoices and its audit trail.

Only users with a partner membership see it (others get 404). The partner is chosen with
`?partner=ptn_…` among those the user belongs to (and their sub-partners); every page checks the
partner action of the user's role there, and a tenant of another partner is a 404. Writes go
through the tenancy and billing services (the API's), which record them in the partner's trail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone

from verticals.billing import analytics, documents
from verticals.billing import services as billing_services
from verticals.billing.catalog import period_of, previous_period
from verticals.billing.models import Invoice, Plan
from verticals.billing.pricing import PriceList, contract_at
from verticals.billing.selectors import price_book_rows
from verticals.portal.billing import (
    PlanChangeForm,
    amount_text,
    chart,
    gauges,
    invoice_context,
    invoice_row,
    money_fmt,
    moneys_text,
    period_text,
    plan_offer,
    plan_summary,
    price_text,
    submit_plan_change,
    unit_words,
    usage_text,
)
from verticals.portal.views import _apply_errors, _error_text, _refuse, page_actions
from verticals.tenancy import services as tenancy_services
from verticals.tenancy.brand import LOGO_MAX_BYTES, Logo, logo_checked
from verticals.tenancy.models import Partner, PartnerAuditEvent, Tenant
from verticals.tenancy.scoping import partner_scope, tenant_context
from verticals.tenancy.services.brand import BRAND_FIELDS

GROWTH_MONTHS = 12
MAX_MONTHS = 36
TENANT_INVOICES_SHOWN = 50
TASK_CHARTS = 8
AUDIT_PAGE_SIZE = 50


# --- which partner, and what the user may do there -----------------------------------------


@dataclass
class Console:
    """The partner a console page is about, the partners the user may switch between, its role's rights."""

    caller: object
    partner: Partner
    partners: list[Partner]
    _allowed: dict[str, set[int]] = field(default_factory=dict, repr=False)

    @property
    def query(self) -> str:
        """What links carry to stay on this partner (nothing when there is only one)."""
        return f"?partner={self.partner.public_id}" if len(self.partners) > 1 else ""

    def allowed(self, action: str) -> set[int]:
        # Read once per action and request: a page asks about several actions, each walking partner trees.
        if action not in self._allowed:
            self._allowed[action] = set(self.caller.partner_ids_for(action))
        return self._allowed[action]

    def can(self, action: str) -> bool:
        return self.partner.pk in self.allowed(action)

    def partner_ids(self, action: str) -> list[int]:
        """This partner and its sub-partners, as far as the user's role allows `action` on them."""
        allowed = self.allowed(action)
        return [pk for pk in self.partner.descendant_ids() if pk in allowed]

    def role(self) -> str:
        for membership in self.caller.partner_memberships():
            if self.partner.pk in membership.partner.descendant_ids():
                return membership.get_role_display()
        return ""


def _console(request) -> Console:
    caller = getattr(request, "caller", None)
    if caller is None or caller.user is None or not caller.partner_memberships():
        raise Http404("There is no partner console for this account.")
    partners = list(
        Partner.objects.filter(pk__in=caller.partner_ids_for("partner.tenant.view")).order_by(
            "name"
        )
    )
    wanted = request.GET.get("partner") or request.POST.get("partner")
    if wanted:
        partner = next((p for p in partners if p.public_id == wanted), None)
        if partner is None:
            raise Http404("No such partner among yours.")
    else:
        direct = {m.partner_id for m in caller.partner_memberships()}
        partner = next((p for p in partners if p.pk in direct), partners[0] if partners else None)
        if partner is None:
            raise Http404("There is no partner console for this account.")
    return Console(caller, partner, partners)


def partner_page(action: str, methods: tuple[str, ...] = ("GET",), writes: str | None = None):
    """A console page: signed in, a member of the chosen partner, whose role allows `action`
    (and `writes` for a POST, checked by the page where it writes; both declared on the page as
    `partner_actions`)."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method not in methods:
                return HttpResponseNotAllowed(methods)
            console = _console(request)
            request.brand_partner = console.partner  # the console wears the partner's own brand
            if not console.can(action):
                return _refuse(
                    request,
                    f"Your role at {console.partner.name} ({console.role()}) does not allow {action}.",
                )
            # The database lets through the rows of this partner's (and its sub-partners') tenants (the
            # second wall); each query still filters by the partners the action allows.
            with partner_scope(console.partner.descendant_ids()):
                return view(request, console, *args, **kwargs)

        wrapped.partner_actions = page_actions(action, methods, writes)
        return wrapped

    return decorator


def _render(
    request, console: Console, template: str, context: dict, *, here: str, status: int = 200
):
    can: dict[str, dict[str, bool]] = {}
    for action in (
        "partner.tenant.create",
        "partner.tenant.plan",
        "partner.tenant.suspend",
        "partner.tenant.reactivate",
        "partner.billing.view",
        "partner.price.update",
        "partner.brand.update",
    ):
        _, noun, verb = action.split(".")
        can.setdefault(noun, {})[verb] = console.can(action)  # templates read can.tenant.create
    context.update(
        {
            "console": console,
            "partner": console.partner,
            "query": console.query,
            "here": here,
            "can": can,
        }
    )
    return render(request, template, context, status=status)


def _back(console: Console, name: str, *args) -> str:
    return reverse(name, args=args) + console.query


def _tenant(console: Console, tenant_id: str, action: str) -> Tenant:
    # Another partner's tenant (or one the role may not act on) is not found, never forbidden.
    return get_object_or_404(
        Tenant.objects.select_related("partner"),
        public_id=tenant_id,
        partner_id__in=console.partner_ids(action),
    )


# --- tenants --------------------------------------------------------------------------------


@partner_page("partner.tenant.view")
def tenant_list(request, console: Console):
    now = timezone.now()
    month = period_of(now, 1)
    last = previous_period(month[0], 1)
    ids = console.partner_ids("partner.tenant.view")
    names = analytics.meter_names()
    this_month = analytics.partner_tenants_report(ids, start=month[0], end=now)
    money = {}
    if console.can("partner.billing.view"):
        money = {
            row["tenant"].pk: row
            for row in analytics.partner_tenants_report(ids, start=last[0], end=last[1])
        }
    rows = []
    for row in this_month:
        tenant = row["tenant"]
        paid = money.get(tenant.pk, {})
        rows.append(
            {
                "tenant": tenant,
                "plan": row["plan"],
                "usage": usage_text(row["usage"], names),
                "revenue": moneys_text(paid.get("revenue")),
                "margin": moneys_text(paid.get("margin")),
            }
        )
    context = {
        "rows": rows,
        "usage_period": period_text(month[0], month[1]),
        "money_period": period_text(*last),
        "money_month": analytics.month_label(last[0].date()),
    }
    return _render(request, console, "portal/partner_tenants.html", context, here="tenants")


class TenantCreateForm(forms.Form):
    name = forms.CharField(max_length=120)
    owner_email = forms.EmailField(
        max_length=254,
        label="Owner's email",
        help_text="They get an invitation to join as the tenant's owner.",
    )
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.none(),
        to_field_name="public_id",
        empty_label=None,
        error_messages={
            "invalid_choice": "Choose one of the plans listed: that plan is not offered."
        },
    )
    trial_days = forms.IntegerField(
        min_value=0,
        max_value=365,
        initial=0,
        label="Trial days",
        help_text="Days before the plan fee is charged (0: none).",
    )

    def __init__(self, *args, partner: Partner, **kwargs):
        super().__init__(*args, **kwargs)
        plans = Plan.objects.filter(is_active=True).prefetch_related("prices")
        self.fields["plan"].queryset = plans
        # unsaved: prices a plan as this partner's tenants pay it
        prospect = Tenant(partner=partner)
        self.fields["plan"].label_from_instance = lambda plan: (
            f"{plan.name} — {amount_text(PriceList(prospect, plan, None).fee().retail, plan.currency)} a month"
        )


@partner_page("partner.tenant.create", methods=("GET", "POST"))
def tenant_new(request, console: Console):
    partner = console.partner
    form = TenantCreateForm(request.POST if request.method == "POST" else None, partner=partner)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            # The tenant, its owner's invitation and its subscription are made together or not at all.
            tenant = billing_services.partner_tenant_create(
                partner=partner,
                name=data["name"],
                owner_email=data["owner_email"],
                plan=data["plan"],
                trial_days=data["trial_days"],
                actor=console.caller,
            )
        except ValidationError as error:
            _apply_errors(form, error)
        else:
            messages.success(
                request,
                f"Tenant '{tenant.name}' created on {data['plan'].name}; "
                f"{data['owner_email']} is invited as its owner.",
            )
            return redirect(_back(console, "portal:partner_tenant", tenant.public_id))
    return _render(
        request,
        console,
        "portal/partner_tenant_new.html",
        {"form": form},
        here="tenants",
        status=400 if form.errors else 200,
    )


class SuspendForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        help_text="Shown to the tenant's members when they sign in.",
        error_messages={
            "required": "Say why the tenant is suspended: its members are shown the reason."
        },
    )


def _tenant_page(
    request,
    console: Console,
    tenant: Tenant,
    *,
    plan_form=None,
    suspend_form=None,
    status: int = 200,
):
    names = analytics.meter_names()
    now = timezone.now()
    with tenant_context(tenant):  # the tenant's rows, read from outside it
        usage = analytics.period_usage(tenant, now)
        summary = plan_summary(tenant, usage, names, now)
        offers = []
        if console.can("partner.tenant.plan"):
            contract = contract_at(tenant, now)
            for plan in Plan.objects.filter(is_active=True).prefetch_related("prices"):
                offer = plan_offer(tenant, plan, contract, names)
                offer["current"] = usage["plan"] is not None and plan.pk == usage["plan"].pk
                offers.append(offer)
    invoices = []
    if console.can("partner.billing.view"):
        invoices = [
            invoice_row(i) for i in Invoice.objects.filter(tenant=tenant)[:TENANT_INVOICES_SHOWN]
        ]
    context = {
        "tenant": tenant,
        "summary": summary,
        "gauges": gauges(usage),
        "period": period_text(*usage["period"]),
        "period_end": usage["period"][1],
        "offers": offers,
        "invoices": invoices,
        "plan_form": plan_form or PlanChangeForm(),
        "suspend_form": suspend_form or SuspendForm(),
        "can_suspend": console.can("partner.tenant.suspend") and not tenant.is_suspended,
        "can_reactivate": console.can("partner.tenant.reactivate") and tenant.is_suspended,
    }
    return _render(
        request, console, "portal/partner_tenant.html", context, here="tenants", status=status
    )


@partner_page("partner.tenant.view")
def tenant_detail(request, console: Console, tenant_id: str):
    return _tenant_page(request, console, _tenant(console, tenant_id, "partner.tenant.view"))


@partner_page("partner.tenant.plan", methods=("POST",))
def tenant_plan(request, console: Console, tenant_id: str):
    tenant = _tenant(console, tenant_id, "partner.tenant.plan")
    form = PlanChangeForm(request.POST)
    if not submit_plan_change(form, tenant=tenant, actor=console.caller, partner=tenant.partner):
        return _tenant_page(request, console, tenant, plan_form=form, status=400)
    messages.success(
        request, f"'{tenant.name}' is now on the plan {form.cleaned_data['plan'].name}."
    )
    return redirect(_back(console, "portal:partner_tenant", tenant.public_id))


@partner_page("partner.tenant.suspend", methods=("POST",))
def tenant_suspend(request, console: Console, tenant_id: str):
    tenant = _tenant(console, tenant_id, "partner.tenant.suspend")
    if tenant.is_suspended:
        messages.error(request, f"'{tenant.name}' is already suspended.")
        return redirect(_back(console, "portal:partner_tenant", tenant.public_id))
    form = SuspendForm(request.POST)
    if not form.is_valid():
        return _tenant_page(request, console, tenant, suspend_form=form, status=400)
    tenancy_services.tenant_suspend(
        tenant=tenant, reason=form.cleaned_data["reason"], actor=console.caller
    )
    messages.success(
        request,
        f"'{tenant.name}' is suspended: its members and API keys are refused until it is reactivated.",
    )
    return redirect(_back(console, "portal:partner_tenant", tenant.public_id))


@partner_page("partner.tenant.reactivate", methods=("POST",))
def tenant_reactivate(request, console: Console, tenant_id: str):
    tenant = _tenant(console, tenant_id, "partner.tenant.reactivate")
    if not tenant.is_suspended:
        messages.error(request, f"'{tenant.name}' is not suspended.")
    else:
        tenancy_services.tenant_reactivate(tenant=tenant, actor=console.caller)
        messages.success(request, f"'{tenant.name}' is active again.")
    return redirect(_back(console, "portal:partner_tenant", tenant.public_id))


# --- the price book -------------------------------------------------------------------------


def _field(plan: Plan, item: str) -> str:
    return f"retail__{plan.public_id}__{item}"


def price_rows(partner: Partner) -> list[dict]:
    """Per active plan, its fee and each meter it prices (the API's rows, `price_book_rows`): list,
    wholesale (the operator's, read only), the partner's retail (empty: the list price) and what
    its tenants pay."""
    plans: dict[int, dict] = {}
    for row in price_book_rows(partner=partner, plans=Plan.objects.filter(is_active=True)):
        plan, currency = row.plan, row.plan.currency
        if row.is_fee:
            label, note = "Monthly fee", ""
        else:
            unit = row.unit or "unit"
            label, note = row.name, f"{unit_words(row.included, unit)} included; per {unit}"
        wholesale = row.wholesale if row.wholesale is not None else row.list_price
        plans.setdefault(plan.pk, {"plan": plan, "rows": []})["rows"].append(
            {
                "plan": plan,
                "item": row.item,
                "label": label,
                "note": note,
                "field": _field(plan, row.item),
                "list": price_text(row.list_price, currency),
                "wholesale": price_text(wholesale, currency),
                "retail": row.retail_set,
                "value": "" if row.retail_set is None else f"{row.retail_set.normalize():f}",
                "placeholder": f"{row.list_price.normalize():f}",
                "paid": price_text(row.retail, currency),
                "margin": price_text(row.retail - wholesale, currency),
                "error": "",
            }
        )
    return list(plans.values())


def _same(raw: str, current: Decimal | None) -> bool:
    if raw == "":
        return current is None
    try:
        return current is not None and Decimal(raw) == current
    except InvalidOperation:
        return False


def apply_prices(partner: Partner, plans: list[dict], data, *, actor) -> int:
    """Set every retail price changed in `data`, all or none: errors land on their rows (nothing is
    written when one is wrong). Returns how many prices changed."""
    changes = []
    for group in plans:
        for row in group["rows"]:
            raw = data.get(row["field"])
            if raw is None:
                continue
            raw = raw.strip()
            row["value"] = raw
            if not _same(raw, row["retail"]):
                changes.append((row, raw))
    failed = False
    with transaction.atomic():
        for row, raw in changes:
            try:
                billing_services.price_book_set_retail(
                    partner=partner,
                    plan=row["plan"],
                    item=row["item"],
                    retail=raw or None,
                    actor=actor,
                )
            except ValidationError as error:
                row["error"] = _error_text(error)
                failed = True
        if failed:
            transaction.set_rollback(True)
    return -1 if failed else len(changes)


@partner_page("partner.billing.view", methods=("GET", "POST"), writes="partner.price.update")
def price_book(request, console: Console):
    partner = console.partner
    operator = partner.parent_id is None
    plans = price_rows(partner) if not operator else []
    status = 200
    if request.method == "POST":
        if not console.can("partner.price.update"):
            return _refuse(
                request,
                f"Your role at {partner.name} ({console.role()}) does not allow partner.price.update.",
            )
        if operator:
            return _refuse(
                request, "The operator's retail prices are the plans' list prices.", status=400
            )
        changed = apply_prices(partner, plans, request.POST, actor=console.caller)
        if changed >= 0:
            messages.success(
                request,
                f"{changed} price{'s' if changed != 1 else ''} changed."
                if changed
                else "No price changed.",
            )
            return redirect(_back(console, "portal:partner_prices"))
        status = 400
    context = {"plans": plans, "operator": operator, "failed": status == 400}
    return _render(
        request, console, "portal/partner_prices.html", context, here="prices", status=status
    )


# --- the brand ------------------------------------------------------------------------------


class BrandForm(forms.ModelForm):
    """Parses the brand; the logo goes through the API's check (tenancy.brand.logo_checked), and
    the change through the one brand service."""

    # A plain file field: Django's image field would open the file itself, before our check says
    # what is wrong (format, pixels, a decompression bomb) in the API's words.
    logo = forms.FileField(
        required=False, help_text=f"PNG, JPEG, GIF or WebP, at most {LOGO_MAX_BYTES // 1024} KB."
    )

    class Meta:
        model = Partner
        fields = ["brand_name", "brand_colour", "support_email", "logo"]
        labels = {
            "brand_name": "Brand name",
            "brand_colour": "Colour",
            "support_email": "Support email",
        }
        widgets = {"brand_colour": forms.TextInput(attrs={"type": "color"})}
        help_texts = {
            "brand_name": "Shown in your tenants' portal, on their invoices and emails (empty: the partner's name).",
            "brand_colour": "The portal's top bar and buttons, and the band on invoices (#rrggbb).",
            "support_email": "Where your tenants are told to write.",
        }

    def clean_logo(self):
        logo = self.cleaned_data.get("logo")
        if isinstance(logo, UploadedFile):
            return logo_checked(logo)  # a ValidationError lands on the field
        return logo  # False: cleared; otherwise the logo kept as it is

    def brand_changes(self) -> dict:
        """What to pass the brand service: the fields, a checked logo or its removal."""
        logo = self.cleaned_data.get("logo")
        return {
            "changes": {key: self.cleaned_data[key] for key in BRAND_FIELDS},
            "logo": logo if isinstance(logo, Logo) else None,
            "remove_logo": logo is False,
            # The portal keeps the name the file was uploaded under (the API names it by the partner).
            "logo_name": logo.named_as_uploaded if isinstance(logo, Logo) else None,
        }

    def _post_clean(self):
        # The model's own checks run in the service; a checked Logo is no file for the instance.
        pass


@partner_page("partner.tenant.view", methods=("GET", "POST"), writes="partner.brand.update")
def brand(request, console: Console):
    partner = console.partner
    # The form edits a copy: an invalid post must not show its values as the saved brand.
    form = BrandForm(
        request.POST or None, request.FILES or None, instance=Partner.objects.get(pk=partner.pk)
    )
    if request.method == "POST":
        if not console.can("partner.brand.update"):
            return _refuse(
                request,
                f"Your role at {partner.name} ({console.role()}) does not allow partner.brand.update.",
            )
        if form.is_valid():
            try:
                tenancy_services.partner_brand_update(
                    partner=Partner.objects.get(pk=partner.pk),
                    actor=console.caller,
                    **form.brand_changes(),
                )
            except ValidationError as error:
                _apply_errors(form, error)
            else:
                messages.success(
                    request, "Brand saved: your tenants' portal and their next invoices show it."
                )
                return redirect(_back(console, "portal:partner_brand"))
    return _render(
        request,
        console,
        "portal/partner_brand.html",
        {"form": form},
        here="brand",
        status=400 if form.errors else 200,
    )


# --- the partner's own audit trail ---------------------------------------------------------


@partner_page("partner.tenant.view")
def audit(request, console: Console):
    """Who changed this partner's price book and brand, created its tenants, changed their plans:
    this partner's trail only (a sub-partner's console shows its own)."""
    page = Paginator(
        PartnerAuditEvent.objects.filter(partner=console.partner), AUDIT_PAGE_SIZE
    ).get_page(request.GET.get("page"))
    return _render(request, console, "portal/partner_audit.html", {"page": page}, here="audit")


# --- growth ---------------------------------------------------------------------------------


def months_wanted(request) -> int:
    try:
        return min(MAX_MONTHS, max(1, int(request.GET.get("months", GROWTH_MONTHS))))
    except ValueError:
        return GROWTH_MONTHS


def growth_context(rows: list[dict], names: dict) -> dict:
    """Growth rows of `analytics.growth` as a table and charts: tenants (new, active, churned), MRR,
    revenue and margin (one chart per currency), usage by task."""
    labels = [analytics.month_label(row["month"]) for row in rows]
    short = labels
    table = [
        {
            "month": label,
            "new": row["new"],
            "active": row["active"],
            "churned": row["churned"],
            "mrr": moneys_text(row["mrr"], "0"),
            "revenue": moneys_text(row["revenue"], "0"),
            "margin": moneys_text(row["margin"], "0"),
        }
        for label, row in zip(labels, rows, strict=True)
    ]
    charts = [
        chart(
            chart_id="tenants",
            title="Tenants by month",
            labels=short,
            tooltips=labels,
            series=[
                {"name": "new", "values": [row["new"] for row in rows]},
                {"name": "active", "values": [row["active"] for row in rows]},
                {"name": "churned", "values": [row["churned"] for row in rows]},
            ],
            fmt=lambda v: unit_words(v, "tenant"),
            whole=True,
        )
    ]
    currencies = sorted(
        {c for row in rows for key in ("mrr", "revenue", "margin") for c in row[key]}
    ) or ["USD"]
    for currency in currencies:
        fmt = money_fmt(currency)
        charts.append(
            chart(
                chart_id=f"mrr-{currency}",
                title=f"MRR ({currency})",
                labels=short,
                tooltips=labels,
                kind="line",
                series=[{"name": "MRR", "values": [row["mrr"].get(currency, 0) for row in rows]}],
                fmt=fmt,
            )
        )
        charts.append(
            chart(
                chart_id=f"revenue-{currency}",
                title=f"Revenue and margin ({currency})",
                labels=short,
                tooltips=labels,
                fmt=fmt,
                series=[
                    {
                        "name": "revenue",
                        "values": [row["revenue"].get(currency, 0) for row in rows],
                    },
                    {"name": "margin", "values": [row["margin"].get(currency, 0) for row in rows]},
                ],
            )
        )
    totals: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        for task, meters in row["usage_by_task"].items():
            for meter, units in meters.items():
                totals[(task, meter)] = totals.get((task, meter), Decimal(0)) + units
    usage_rows, task_charts = [], []
    for (task, meter), total in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])):
        info = names.get(meter)
        unit = info.unit if info else ""
        usage_rows.append(
            {
                "task": task,
                "meter": meter,
                "name": info.name if info else meter,
                "total": unit_words(total, unit),
                "last": unit_words(rows[-1]["usage_by_task"].get(task, {}).get(meter, 0), unit),
            }
        )
        if len(task_charts) < TASK_CHARTS:
            task_charts.append(
                chart(
                    chart_id=f"task-{task}-{meter}",
                    title=f"{task}: {info.name if info else meter}",
                    labels=short,
                    tooltips=labels,
                    series=[
                        {
                            "name": meter,
                            "values": [
                                row["usage_by_task"].get(task, {}).get(meter, 0) for row in rows
                            ],
                        }
                    ],
                    fmt=lambda v, unit=unit: unit_words(v, unit),
                    height=120,
                )
            )
    return {"table": table, "charts": charts, "usage_rows": usage_rows, "task_charts": task_charts}


@partner_page("partner.billing.view")
def growth(request, console: Console):
    months = months_wanted(request)
    rows = analytics.growth(console.partner_ids("partner.billing.view"), months=months)
    context = {"months": months, **growth_context(rows, analytics.meter_names())}
    return _render(request, console, "portal/partner_growth.html", context, here="growth")


# --- invoices -------------------------------------------------------------------------------


def _partner_invoices(console: Console):
    """Invoices billed to this partner (wholesale, credit notes) and those it issued to its tenants."""
    ids = console.partner_ids("partner.billing.view")
    return Invoice.objects.filter(Q(partner_id=console.partner.pk) | Q(tenant__partner_id__in=ids))


@partner_page("partner.billing.view")
def invoice_list(request, console: Console):
    billed = list(Invoice.objects.filter(partner=console.partner).select_related("credits"))
    totals = {"total": {}, "retail": {}, "margin": {}}
    for invoice in billed:
        for key, minor in (
            ("total", invoice.total_minor),
            ("retail", invoice.retail_total_minor),
            ("margin", invoice.margin_minor),
        ):
            if minor is not None:
                totals[key][invoice.currency] = totals[key].get(invoice.currency, 0) + minor
    issued = Invoice.objects.filter(
        tenant__partner_id__in=console.partner_ids("partner.billing.view")
    )
    context = {
        "billed": [invoice_row(i) for i in billed],
        "issued": [invoice_row(i) for i in issued[:TENANT_INVOICES_SHOWN]],
        "totals": {key: moneys_text(value, "0") for key, value in totals.items()},
    }
    return _render(request, console, "portal/partner_invoices.html", context, here="invoices")


@partner_page("partner.billing.view")
def invoice_detail(request, console: Console, invoice_id: str):
    invoice = get_object_or_404(
        _partner_invoices(console).select_related("credits"), public_id=invoice_id
    )
    context = invoice_context(invoice)
    context["download"] = reverse("portal:partner_invoice", args=[invoice.public_id])
    return _render(request, console, "portal/partner_invoice.html", context, here="invoices")


@partner_page("partner.billing.view")
def invoice_download(request, console: Console, invoice_id: str, fmt: str):
    invoice = get_object_or_404(
        _partner_invoices(console).select_related("credits"), public_id=invoice_id
    )
    return documents.invoice_response(invoice, fmt)
