from django.urls import path
from rest_framework.routers import SimpleRouter

from verticals.api import jobs, registry, views
from verticals.api.billing import brand, insights, invoices, partner, plans, usage

app_name = "api"

router = SimpleRouter()
router.register("projects", views.ProjectViewSet, basename="project")
router.register(r"projects/(?P<project_id>[^/.]+)/jobs", jobs.JobViewSet, basename="job")
router.register(
    r"projects/(?P<project_id>[^/.]+)/datasets", registry.DatasetViewSet, basename="dataset"
)
router.register(
    r"projects/(?P<project_id>[^/.]+)/models", registry.ModelVersionViewSet, basename="model"
)
router.register("base-models", registry.BaseModelViewSet, basename="base-model")
router.register("members", views.MemberViewSet, basename="member")
router.register("invitations", views.InvitationViewSet, basename="invitation")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")
router.register("partner/tenants", views.PartnerTenantViewSet, basename="partner-tenant")
# Billing: plans, usage, invoices; the partner console's tenants' plans and usage, invoices.
router.register("plans", plans.PlanViewSet, basename="plan")
router.register("invoices", invoices.InvoiceViewSet, basename="invoice")
router.register(
    "partner/tenants", partner.PartnerTenantBillingViewSet, basename="partner-tenant-billing"
)
router.register("partner/invoices", partner.PartnerInvoiceViewSet, basename="partner-invoice")

urlpatterns = [
    path("me", views.MeView.as_view(), name="me"),
    path("tasks/", registry.TaskListView.as_view(), name="tasks"),
    # The predict route as integrators write it, without the trailing slash.
    path(
        "projects/<str:project_id>/models/<str:model_id>/predict",
        registry.BarePredictView.as_view({"post": "predict"}),
        name="model-predict-bare",
    ),
    # Billing routes that are not collections of rows, and the bare forms (no trailing slash) of
    # the actions integrators and download links write without one.
    path("subscription/", plans.SubscriptionView.as_view(), name="subscription"),
    path("usage/", usage.UsageView.as_view(), name="usage"),
    path("usage/events/", usage.UsageEventsView.as_view(), name="usage-events"),
    path("usage/events", usage.BareUsageEventsView.as_view(), name="usage-events-bare"),
    path("insights/", insights.InsightsView.as_view(), name="insights"),
    path(
        "invoices/<str:invoice_id>/credit-notes/",
        invoices.InvoiceCreditNoteView.as_view(),
        name="invoice-credit-notes",
    ),
    path(
        "invoices/<str:invoice_id>/pdf",
        invoices.BareInvoiceDownloadView.as_view({"get": "pdf"}),
        name="invoice-pdf-bare",
    ),
    path(
        "invoices/<str:invoice_id>/csv",
        invoices.BareInvoiceDownloadView.as_view({"get": "csv"}),
        name="invoice-csv-bare",
    ),
    path(
        "partner/price-book/",
        partner.PartnerPriceBookView.as_view({"get": "show", "put": "change", "patch": "change"}),
        name="partner-price-book",
    ),
    path(
        "partner/brand/",
        brand.PartnerBrandView.as_view({"get": "show", "patch": "change"}),
        name="partner-brand",
    ),
    path(
        "partner/revenue/",
        partner.PartnerRevenueView.as_view({"get": "report"}),
        name="partner-revenue",
    ),
    path(
        "partner/growth/",
        partner.PartnerGrowthView.as_view({"get": "report"}),
        name="partner-growth",
    ),
    path(
        "partner/tenants/<str:tenant_id>/plan",
        partner.BarePartnerTenantPlanView.as_view({"post": "plan"}),
        name="partner-tenant-plan-bare",
    ),
    path(
        "partner/invoices/<str:invoice_id>/pdf",
        partner.BarePartnerInvoiceDownloadView.as_view({"get": "pdf"}),
        name="partner-invoice-pdf-bare",
    ),
    path(
        "partner/invoices/<str:invoice_id>/csv",
        partner.BarePartnerInvoiceDownloadView.as_view({"get": "csv"}),
        name="partner-invoice-csv-bare",
    ),
    *router.urls,
]
