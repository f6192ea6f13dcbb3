"""Staff manage the catalog here: plans and their prices, partners' wholesale prices, contracts.
Invoices and usage are read-only (issued invoices never change; corrections are credit notes)."""

from django.contrib import admin

from verticals.billing.models import (
    Contract,
    ContractPrice,
    Invoice,
    InvoiceLine,
    Meter,
    Plan,
    PlanPrice,
    PriceBook,
    PriceBookEntry,
    Subscription,
    UsageEvent,
)


class PlanPriceInline(admin.TabularInline):
    model = PlanPrice
    extra = 1


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "currency",
        "monthly_fee",
        "cap",
        "requests_per_minute",
        "concurrent_jobs",
        "is_active",
    ]
    inlines = [PlanPriceInline]


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    list_display = ["key", "name", "unit", "declared_by"]
    readonly_fields = ["key", "declared_by"]


class PriceBookEntryInline(admin.TabularInline):
    model = PriceBookEntry
    extra = 1


@admin.register(PriceBook)
class PriceBookAdmin(admin.ModelAdmin):
    list_display = ["partner", "updated_at"]
    inlines = [PriceBookEntryInline]


class ContractPriceInline(admin.TabularInline):
    model = ContractPrice
    extra = 1


@admin.register(Contract)
class ContractAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "starts_at", "ends_at"]
    inlines = [ContractPriceInline]

    def get_queryset(self, request):
        return Contract.dangerously_unscoped.all()  # staff see every tenant's contracts


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["tenant", "plan", "starts_at", "ends_at", "trial_ends_at"]

    def get_queryset(self, request):
        return Subscription.dangerously_unscoped.select_related(
            "tenant", "plan"
        )  # staff see every tenant's


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    fk_name = "invoice"
    extra = 0
    can_delete = False

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Invoice)
class InvoiceAdmin(ReadOnly):
    list_display = [
        "number",
        "kind",
        "tenant",
        "partner",
        "currency",
        "total_minor",
        "period_start",
        "issued_at",
    ]
    list_filter = ["kind", "currency"]
    inlines = [InvoiceLineInline]


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnly):
    list_display = ["occurred_at", "tenant", "meter", "quantity", "source", "route"]
    list_filter = ["meter", "source"]

    def get_queryset(self, request):
        return UsageEvent.dangerously_unscoped.select_related("tenant")  # staff see every tenant's
