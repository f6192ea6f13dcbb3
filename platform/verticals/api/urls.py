from django.urls import path
from rest_framework.routers import SimpleRouter

from verticals.api import jobs, registry, views
from verticals.api.billing import brand, insights, invoices, partner, plans, usage

app_name = "api"

router = SimpleRouter()

# The same view, answering its route's form without the trailing slash (as integrators and
# download links write it): left out of the document, which lists the route once, with the slash;
# one object, so no filters or pages. A setting of the route, not a twin class per view.
SLASHLESS = {"schema": None, "filter_backends": [], "pagination_class": None}


def slashless(route: str, view, name: str, actions: dict | None = None):
    initkwargs = SLASHLESS if actions is not None else {"schema": None}
    callback = (
        view.as_view(actions, **initkwargs) if actions is not None else view.as_view(**initkwargs)
    )
    return path(route, callback, name=name)


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
    slashless("usage/events", usage.UsageEventsView, "usage-events-bare"),
    path("insights/", insights.InsightsView.as_view(), name="insights"),
    path(
        "invoices/<str:invoice_id>/credit-notes/",
        invoices.InvoiceCreditNoteView.as_view(),
        name="invoice-credit-notes",
    ),
    slashless(
        "invoices/<str:invoice_id>/pdf", invoices.InvoiceViewSet, "invoice-pdf-bare", {"get": "pdf"}
    ),
    slashless(
        "invoices/<str:invoice_id>/csv", invoices.InvoiceViewSet, "invoice-csv-bare", {"get": "csv"}
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
        "partner/audit-events/",
        partner.PartnerAuditEventView.as_view({"get": "list"}),
        name="partner-audit-events",
    ),
    path(
        "partner/growth/",
        partner.PartnerGrowthView.as_view({"get": "report"}),
        name="partner-growth",
    ),
    slashless(
        "partner/tenants/<str:tenant_id>/plan",
        partner.PartnerTenantBillingViewSet,
        "partner-tenant-plan-bare",
        {"post": "plan"},
    ),
    slashless(
        "partner/invoices/<str:invoice_id>/pdf",
        partner.PartnerInvoiceViewSet,
        "partner-invoice-pdf-bare",
        {"get": "pdf"},
    ),
    slashless(
        "partner/invoices/<str:invoice_id>/csv",
        partner.PartnerInvoiceViewSet,
        "partner-invoice-csv-bare",
        {"get": "csv"},
    ),
    *router.urls,
]
