from django.urls import path
from rest_framework.routers import SimpleRouter

from verticals.api import billing, jobs, registry, views

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
router.register("plans", billing.PlanViewSet, basename="plan")
router.register("invoices", billing.InvoiceViewSet, basename="invoice")
router.register(
    "partner/tenants", billing.PartnerTenantBillingViewSet, basename="partner-tenant-billing"
)
router.register("partner/invoices", billing.PartnerInvoiceViewSet, basename="partner-invoice")

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
    path("subscription/", billing.SubscriptionView.as_view(), name="subscription"),
    path("usage/", billing.UsageView.as_view(), name="usage"),
    path("usage/events/", billing.UsageEventsView.as_view(), name="usage-events"),
    path("usage/events", billing.BareUsageEventsView.as_view(), name="usage-events-bare"),
    path("insights/", billing.InsightsView.as_view(), name="insights"),
    path(
        "invoices/<str:invoice_id>/credit-notes/",
        billing.InvoiceCreditNoteView.as_view(),
        name="invoice-credit-notes",
    ),
    path(
        "invoices/<str:invoice_id>/pdf",
        billing.BareInvoiceDownloadView.as_view({"get": "pdf"}),
        name="invoice-pdf-bare",
    ),
    path(
        "invoices/<str:invoice_id>/csv",
        billing.BareInvoiceDownloadView.as_view({"get": "csv"}),
        name="invoice-csv-bare",
    ),
    path(
        "partner/price-book/",
        billing.PartnerPriceBookView.as_view({"get": "show", "put": "change", "patch": "change"}),
        name="partner-price-book",
    ),
    path(
        "partner/brand/",
        billing.PartnerBrandView.as_view({"get": "show", "patch": "change"}),
        name="partner-brand",
    ),
    path(
        "partner/revenue/",
        billing.PartnerRevenueView.as_view({"get": "report"}),
        name="partner-revenue",
    ),
    path(
        "partner/growth/",
        billing.PartnerGrowthView.as_view({"get": "report"}),
        name="partner-growth",
    ),
    path(
        "partner/tenants/<str:tenant_id>/plan",
        billing.BarePartnerTenantPlanView.as_view({"post": "plan"}),
        name="partner-tenant-plan-bare",
    ),
    path(
        "partner/invoices/<str:invoice_id>/pdf",
        billing.BarePartnerInvoiceDownloadView.as_view({"get": "pdf"}),
        name="partner-invoice-pdf-bare",
    ),
    path(
        "partner/invoices/<str:invoice_id>/csv",
        billing.BarePartnerInvoiceDownloadView.as_view({"get": "csv"}),
        name="partner-invoice-csv-bare",
    ),
    *router.urls,
]
