"""Invoices and credit notes: the tenant's list, detail and downloads; staff credit notes."""

from __future__ import annotations

from datetime import UTC, datetime, time

import django_filters
from django.core.files.storage import default_storage
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from verticals.api.base import (
    CallerAPIView,
    TenantScopedViewSet,
)
from verticals.api.billing.formatting import (
    MoneySerializer,
    UnitPriceSerializer,
    decimal_text,
    money,
    price,
    when,
)
from verticals.api.billing.queries import CSV
from verticals.api.permissions import require_staff
from verticals.api.serializers import AsSentField, StrictSerializer
from verticals.billing import documents, invoicing
from verticals.billing.models import Invoice
from verticals.billing.money import (
    MoneyError,
    as_decimal,
    decimals_of,
)

TENANT_KINDS = (Invoice.Kind.RETAIL, Invoice.Kind.CREDIT_NOTE)


# --- invoices -----------------------------------------------------------------------------------


class InvoiceFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=Invoice.Kind.choices)
    period = django_filters.DateFilter(
        method="filter_period", help_text="A day (YYYY-MM-DD) the invoice's period holds."
    )
    since = django_filters.DateFilter(
        method="filter_since", help_text="Periods starting on or after this day (UTC)."
    )
    until = django_filters.DateFilter(
        method="filter_until", help_text="Periods ending on or before this day's start (UTC)."
    )

    class Meta:
        model = Invoice
        fields = ["kind", "period", "since", "until"]

    @staticmethod
    def _midnight(day) -> datetime:
        return datetime.combine(day, time(0), tzinfo=UTC)

    def filter_period(self, queryset, name, value):
        moment = self._midnight(value)
        return queryset.filter(period_start__lte=moment, period_end__gt=moment)

    def filter_since(self, queryset, name, value):
        return queryset.filter(period_start__gte=self._midnight(value))

    def filter_until(self, queryset, name, value):
        return queryset.filter(period_end__lte=self._midnight(value))


class TenantInvoiceFilter(InvoiceFilter):
    kind = django_filters.ChoiceFilter(choices=[(k.value, k.label) for k in TENANT_KINDS])


class PartnerInvoiceFilter(InvoiceFilter):
    tenant = django_filters.CharFilter(
        field_name="tenant__public_id", help_text="Only this tenant's invoices (its id)."
    )

    class Meta(InvoiceFilter.Meta):
        fields = InvoiceFilter.Meta.fields + ["tenant"]


class InvoiceLineSerializer(serializers.Serializer):
    """A line as the billed tenant sees it."""

    position = serializers.IntegerField()
    kind = serializers.CharField()
    description = serializers.CharField()
    plan = serializers.SerializerMethodField()
    meter = serializers.CharField()
    quantity = serializers.SerializerMethodField()
    included = serializers.SerializerMethodField()
    billable = serializers.SerializerMethodField()
    unit_price = serializers.SerializerMethodField()
    amount = serializers.SerializerMethodField()
    by_task = serializers.DictField(
        child=serializers.CharField(), help_text="Usage lines: units per task."
    )

    def get_plan(self, line) -> str | None:
        return line.plan.code if line.plan_id else None

    def get_quantity(self, line) -> str:
        return decimal_text(line.quantity)

    def get_included(self, line) -> str:
        return decimal_text(line.included)

    def get_billable(self, line) -> str:
        return decimal_text(line.billable)

    @extend_schema_field(UnitPriceSerializer)
    def get_unit_price(self, line) -> dict:
        return price(line.unit_price, line.invoice.currency)

    @extend_schema_field(MoneySerializer)
    def get_amount(self, line) -> dict:
        return money(line.amount_minor, line.invoice.currency)


class PartnerInvoiceLineSerializer(InvoiceLineSerializer):
    """A line as the partner sees it: both legs of the channel."""

    tenant = serializers.SerializerMethodField()
    wholesale_unit_price = serializers.SerializerMethodField()
    wholesale_amount = serializers.SerializerMethodField()
    retail_amount = serializers.SerializerMethodField()

    @extend_schema_field(
        inline_serializer(
            "InvoiceTenantRef",
            {"id": serializers.CharField(), "name": serializers.CharField()},
            allow_null=True,
        )
    )
    def get_tenant(self, line) -> dict | None:
        return {"id": line.tenant.public_id, "name": line.tenant.name} if line.tenant_id else None

    @extend_schema_field(UnitPriceSerializer(allow_null=True))
    def get_wholesale_unit_price(self, line) -> dict | None:
        return price(line.wholesale_unit_price, line.invoice.currency)

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_wholesale_amount(self, line) -> dict | None:
        """Retail lines of a partner's tenant: what the same line costs the partner."""
        minor = line.wholesale_amount_minor
        return None if minor is None else money(minor, line.invoice.currency)

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_retail_amount(self, line) -> dict | None:
        """Wholesale lines: what the partner billed its tenant for the same line."""
        minor = line.retail_amount_minor
        return None if minor is None else money(minor, line.invoice.currency)


class InvoiceSerializer(serializers.ModelSerializer):
    """An invoice or credit note as the billed tenant sees it, under its issuer's brand."""

    id = serializers.CharField(source="public_id", read_only=True)
    period = serializers.SerializerMethodField()
    total = serializers.SerializerMethodField()
    credited = serializers.SerializerMethodField()
    credits = serializers.SerializerMethodField()
    brand = serializers.SerializerMethodField()
    bill_to = serializers.SerializerMethodField()
    pdf = serializers.SerializerMethodField()
    csv = serializers.SerializerMethodField()

    class Meta:
        model = Invoice
        fields = [
            "id",
            "number",
            "kind",
            "currency",
            "period",
            "issued_at",
            "total",
            "credited",
            "credits",
            "reason",
            "brand",
            "bill_to",
            "pdf",
            "csv",
        ]

    link_prefix = "/api/v1/invoices/"

    @extend_schema_field(
        inline_serializer(
            "InvoicePeriod",
            {"start": serializers.DateTimeField(), "end": serializers.DateTimeField()},
        )
    )
    def get_period(self, invoice) -> dict:
        return {"start": when(invoice.period_start), "end": when(invoice.period_end)}

    @extend_schema_field(MoneySerializer)
    def get_total(self, invoice) -> dict:
        return money(invoice.total_minor, invoice.currency)

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_credited(self, invoice) -> dict | None:
        """What credit notes took back of this invoice (null on a credit note)."""
        if invoice.kind == Invoice.Kind.CREDIT_NOTE:
            return None
        return money(invoicing.credited_minor(invoice), invoice.currency)

    @extend_schema_field(
        inline_serializer(
            "CreditedInvoiceRef",
            {"id": serializers.CharField(), "number": serializers.CharField()},
            allow_null=True,
        )
    )
    def get_credits(self, invoice) -> dict | None:
        """A credit note: the invoice it corrects."""
        return (
            {"id": invoice.credits.public_id, "number": invoice.credits.number}
            if invoice.credits_id
            else None
        )

    @extend_schema_field(
        inline_serializer(
            "InvoiceBrand",
            {
                "name": serializers.CharField(),
                "colour": serializers.CharField(),
                "support_email": serializers.CharField(),
                "logo": serializers.CharField(allow_null=True),
            },
        )
    )
    def get_brand(self, invoice) -> dict:
        """The issuer's brand as it was at issue (a partner's tenants see the partner)."""
        brand = invoice.brand or {}
        logo = brand.get("logo") or ""
        return {
            "name": brand.get("name", ""),
            "colour": brand.get("colour", ""),
            "support_email": brand.get("support_email", ""),
            "logo": default_storage.url(logo) if logo else None,
        }

    @extend_schema_field(
        inline_serializer(
            "InvoiceBillTo", {"name": serializers.CharField(), "id": serializers.CharField()}
        )
    )
    def get_bill_to(self, invoice) -> dict:
        bill_to = invoice.bill_to or {}
        return {
            "name": bill_to.get("name", ""),
            "id": bill_to.get("tenant") or bill_to.get("partner") or "",
        }

    def get_pdf(self, invoice) -> str:
        return f"{self.link_prefix}{invoice.public_id}/pdf/"

    def get_csv(self, invoice) -> str:
        return f"{self.link_prefix}{invoice.public_id}/csv/"


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = serializers.SerializerMethodField()

    class Meta(InvoiceSerializer.Meta):
        fields = InvoiceSerializer.Meta.fields + ["lines"]

    line_serializer = InvoiceLineSerializer

    @extend_schema_field(InvoiceLineSerializer(many=True))
    def get_lines(self, invoice) -> list[dict]:
        lines = invoice.lines.select_related("plan", "tenant", "invoice").order_by("position")
        return self.line_serializer(lines, many=True).data


class PartnerInvoiceSerializer(InvoiceSerializer):
    """An invoice as a partner sees it: its tenants' retail invoices with their wholesale cost, and
    the operator's wholesale invoices to it with what it billed its tenants for the same lines."""

    tenant = serializers.SerializerMethodField()
    wholesale_total = serializers.SerializerMethodField()
    retail_total = serializers.SerializerMethodField()
    margin = serializers.SerializerMethodField()

    class Meta(InvoiceSerializer.Meta):
        fields = InvoiceSerializer.Meta.fields + [
            "tenant",
            "wholesale_total",
            "retail_total",
            "margin",
        ]

    link_prefix = "/api/v1/partner/invoices/"

    @extend_schema_field(
        inline_serializer(
            "PartnerInvoiceTenantRef",
            {"id": serializers.CharField(), "name": serializers.CharField()},
            allow_null=True,
        )
    )
    def get_tenant(self, invoice) -> dict | None:
        return (
            {"id": invoice.tenant.public_id, "name": invoice.tenant.name}
            if invoice.tenant_id
            else None
        )

    def _wholesale_minor(self, invoice) -> int | None:
        if invoice.kind == Invoice.Kind.WHOLESALE:
            return invoice.total_minor
        if invoice.kind == Invoice.Kind.RETAIL:
            costs = [line.wholesale_amount_minor for line in invoice.lines.all()]
            return None if any(cost is None for cost in costs) or not costs else sum(costs)
        return None

    def _retail_minor(self, invoice) -> int | None:
        if invoice.kind == Invoice.Kind.WHOLESALE:
            return invoice.retail_total_minor
        return invoice.total_minor if invoice.kind == Invoice.Kind.RETAIL else None

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_wholesale_total(self, invoice) -> dict | None:
        """What the lines cost the partner (null for a direct customer of the operator, and on credit notes)."""
        minor = self._wholesale_minor(invoice)
        return None if minor is None else money(minor, invoice.currency)

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_retail_total(self, invoice) -> dict | None:
        """What the tenants were billed for the lines."""
        minor = self._retail_minor(invoice)
        return None if minor is None else money(minor, invoice.currency)

    @extend_schema_field(MoneySerializer(allow_null=True))
    def get_margin(self, invoice) -> dict | None:
        """retail_total − wholesale_total."""
        retail, wholesale = self._retail_minor(invoice), self._wholesale_minor(invoice)
        return (
            None
            if retail is None or wholesale is None
            else money(retail - wholesale, invoice.currency)
        )


class PartnerInvoiceDetailSerializer(PartnerInvoiceSerializer):
    lines = serializers.SerializerMethodField()

    class Meta(PartnerInvoiceSerializer.Meta):
        fields = PartnerInvoiceSerializer.Meta.fields + ["lines"]

    @extend_schema_field(PartnerInvoiceLineSerializer(many=True))
    def get_lines(self, invoice) -> list[dict]:
        lines = invoice.lines.select_related("plan", "tenant", "invoice").order_by("position")
        return PartnerInvoiceLineSerializer(lines, many=True).data


class InvoiceDownloads:
    """`{id}/pdf/` and `{id}/csv/` of an invoice the viewset lets the caller see."""

    @extend_schema(responses={(200, "application/pdf"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def pdf(self, request, invoice_id=None):
        """The invoice as a PDF, under its issuer's brand."""
        return documents.invoice_response(self.get_object(), "pdf")

    @extend_schema(responses={(200, CSV): OpenApiTypes.STR})
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def csv(self, request, invoice_id=None):
        """The invoice's lines and total as CSV (amounts as decimals in the currency)."""
        return documents.invoice_response(self.get_object(), "csv")


class InvoiceViewSet(
    InvoiceDownloads, mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet
):
    """The tenant's invoices and credit notes (retail: what its provider bills it)."""

    model = Invoice
    lookup_url_kwarg = "invoice_id"
    filterset_class = TenantInvoiceFilter
    ordering_fields = ["issued_at", "period_start"]
    actions = {
        "list": "invoice.view",
        "retrieve": "invoice.view",
        "pdf": "invoice.view",
        "csv": "invoice.view",
    }

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Invoice.objects.none()
        # Invoices are not tenant-owned rows (wholesale ones bill partners): the filter is explicit.
        return Invoice.objects.filter(
            tenant_id=self.caller.tenant.pk, kind__in=TENANT_KINDS
        ).select_related("credits")

    def get_serializer_class(self):
        return InvoiceDetailSerializer if self.action == "retrieve" else InvoiceSerializer


REASON_NEEDED = (
    "Say why the invoice is credited (at most 400 characters); "
    "the reason is printed on the credit note."
)


class CreditNoteRequestSerializer(StrictSerializer):
    takes = "send reason and, optionally, amount"
    not_an_object = {"reason": [REASON_NEEDED]}

    reason = AsSentField(
        max_length=400,
        help_text="Printed on the credit note.",
        error_messages={"required": REASON_NEEDED},
    )
    amount = AsSentField(
        required=False,
        help_text="Decimal string in the invoice's currency; default: all that is left.",
    )

    def validate_reason(self, value) -> str:
        if not isinstance(value, str) or not value.strip() or len(value) > 400:
            raise serializers.ValidationError(REASON_NEEDED)
        return value


class InvoiceCreditNoteView(CallerAPIView):
    """Staff: take back (part of) an issued invoice with a credit note."""

    def required_action(self) -> str | None:
        return None  # staff only, checked in post()

    @extend_schema(
        request=CreditNoteRequestSerializer,
        responses={
            201: PartnerInvoiceDetailSerializer,
            400: OpenApiResponse(
                description="No reason, or an amount that is not above zero or is over what is left to credit."
            ),
        },
    )
    def post(self, request, invoice_id=None):
        # Staff credit any invoice; others only learn below whether it is their own.
        invoices = Invoice.dangerously_unscoped.filter(public_id=invoice_id).select_related(
            "tenant", "issuer"
        )
        caller = self.caller
        if caller.person is None or not caller.person.is_staff:
            # Others learn nothing of invoices that are not theirs: 404, as for a missing one; 403 for their own.
            own = (
                caller.tenant is not None
                and caller.can("invoice.view")
                and invoices.filter(tenant_id=caller.tenant.pk, kind__in=TENANT_KINDS).exists()
            )
            if not own:
                raise Http404
            require_staff(caller)
        invoice = invoices.first()
        if invoice is None:
            raise Http404
        payload = CreditNoteRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        body = payload.validated_data
        reason = body["reason"]
        amount_minor = None
        if body.get("amount") not in (None, ""):
            try:
                amount = as_decimal(
                    body["amount"], field="amount", places=decimals_of(invoice.currency)
                )
            except MoneyError as exc:
                raise exceptions.ValidationError(
                    {"amount": [f"{str(exc).split(': ', 1)[-1]} ({invoice.currency})"]}
                ) from None
            amount_minor = int(amount.scaleb(decimals_of(invoice.currency)))
        credit = invoicing.issue_credit_note(
            invoice, reason=reason, amount_minor=amount_minor, actor=caller
        )  # audited there
        return Response(PartnerInvoiceDetailSerializer(credit).data, status=status.HTTP_201_CREATED)
