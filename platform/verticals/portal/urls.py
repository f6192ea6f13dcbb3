from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from verticals.portal import billing, chat, insights, jobs, partner, registry, views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            template_name="portal/password_reset.html",
            email_template_name="portal/password_reset_email.txt",
            success_url=reverse_lazy("portal:password_reset_done"),
        ),
        name="password_reset",
    ),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(template_name="portal/password_reset_done.html"),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            template_name="portal/password_reset_confirm.html",
            success_url=reverse_lazy("portal:password_reset_complete"),
        ),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done/",
        auth_views.PasswordResetCompleteView.as_view(
            template_name="portal/password_reset_complete.html"
        ),
        name="password_reset_complete",
    ),
    path("tenant/switch", views.switch_tenant, name="switch_tenant"),
    path("projects/", views.projects, name="projects"),
    path("projects/<str:project_id>/", views.project_detail, name="project_detail"),
    path("projects/<str:project_id>/delete", views.project_delete, name="project_delete"),
    path("projects/<str:project_id>/jobs/", jobs.job_list, name="project_jobs"),
    path("projects/<str:project_id>/jobs/<str:job_id>/", jobs.job_detail, name="job_detail"),
    path("projects/<str:project_id>/jobs/<str:job_id>/live", jobs.job_live, name="job_live"),
    path("projects/<str:project_id>/jobs/<str:job_id>/cancel", jobs.job_cancel, name="job_cancel"),
    path("projects/<str:project_id>/datasets/", registry.dataset_list, name="project_datasets"),
    path(
        "projects/<str:project_id>/datasets/<str:dataset_id>/",
        registry.dataset_detail,
        name="dataset_detail",
    ),
    path(
        "projects/<str:project_id>/datasets/<str:dataset_id>/versions",
        registry.dataset_version_upload,
        name="dataset_version_upload",
    ),
    path(
        "projects/<str:project_id>/datasets/<str:dataset_id>/delete",
        registry.dataset_delete,
        name="dataset_delete",
    ),
    path("projects/<str:project_id>/train/", registry.train, name="train"),
    path("projects/<str:project_id>/models/", registry.model_list, name="project_models"),
    path(
        "projects/<str:project_id>/models/<str:model_id>/",
        registry.model_detail,
        name="model_detail",
    ),
    path(
        "projects/<str:project_id>/models/<str:model_id>/predict",
        registry.model_predict,
        name="model_predict",
    ),
    path(
        "projects/<str:project_id>/models/<str:model_id>/delete",
        registry.model_delete,
        name="model_delete",
    ),
    path("projects/<str:project_id>/chat/", chat.chat_page, name="chat"),
    path("projects/<str:project_id>/chat/stream", chat.chat_stream, name="chat_stream"),
    path("jobs/", jobs.job_list, name="jobs"),
    path("members/", views.members, name="members"),
    path(
        "members/invitations/<str:invitation_id>/resend",
        views.invitation_manage,
        {"verb": "resend"},
        name="invitation_resend",
    ),
    path(
        "members/invitations/<str:invitation_id>/revoke",
        views.invitation_manage,
        {"verb": "revoke"},
        name="invitation_revoke",
    ),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
    path("members/<str:member_id>/role", views.member_role, name="member_role"),
    path("members/<str:member_id>/remove", views.member_remove, name="member_remove"),
    path("audit/", views.audit_log, name="audit"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<str:key_id>/revoke", views.api_key_revoke, name="api_key_revoke"),
    path("billing/", billing.overview, name="billing"),
    path("billing/plan/", billing.plan_change, name="billing_plan"),
    path("billing/invoices/", billing.invoice_list, name="billing_invoices"),
    path("billing/invoices/<str:invoice_id>/", billing.invoice_detail, name="billing_invoice"),
    path(
        "billing/invoices/<str:invoice_id>/pdf",
        billing.invoice_download,
        {"fmt": "pdf"},
        name="billing_invoice_pdf",
    ),
    path(
        "billing/invoices/<str:invoice_id>/csv",
        billing.invoice_download,
        {"fmt": "csv"},
        name="billing_invoice_csv",
    ),
    path("partner/", partner.tenant_list, name="partner_tenants"),
    path("partner/tenants/new", partner.tenant_new, name="partner_tenant_new"),
    path("partner/tenants/<str:tenant_id>/", partner.tenant_detail, name="partner_tenant"),
    path("partner/tenants/<str:tenant_id>/plan", partner.tenant_plan, name="partner_tenant_plan"),
    path(
        "partner/tenants/<str:tenant_id>/suspend",
        partner.tenant_suspend,
        name="partner_tenant_suspend",
    ),
    path(
        "partner/tenants/<str:tenant_id>/reactivate",
        partner.tenant_reactivate,
        name="partner_tenant_reactivate",
    ),
    path("partner/prices/", partner.price_book, name="partner_prices"),
    path("partner/brand/", partner.brand, name="partner_brand"),
    path("partner/growth/", partner.growth, name="partner_growth"),
    path("partner/audit/", partner.audit, name="partner_audit"),
    path("partner/invoices/", partner.invoice_list, name="partner_invoices"),
    path("partner/invoices/<str:invoice_id>/", partner.invoice_detail, name="partner_invoice"),
    path(
        "partner/invoices/<str:invoice_id>/pdf",
        partner.invoice_download,
        {"fmt": "pdf"},
        name="partner_invoice_pdf",
    ),
    path(
        "partner/invoices/<str:invoice_id>/csv",
        partner.invoice_download,
        {"fmt": "csv"},
        name="partner_invoice_csv",
    ),
    path("insights/", insights.overview, name="insights"),
]
