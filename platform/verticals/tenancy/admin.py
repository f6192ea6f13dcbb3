"""Django admin for staff. Staff operate across tenants, so admin lists are unscoped by design.

Tenant-owned rows are read-only here: changes to a tenant's data go through the product's own
flows (and its audit log). Staff act on tenants themselves with audited actions.
"""

from django import forms
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.text import capfirst

from verticals.tenancy import services
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import (
    ApiKey,
    AuditEvent,
    Invitation,
    Membership,
    Partner,
    PartnerMembership,
    Project,
    Tenant,
    User,
)
from verticals.tenancy.throttle import ThrottledLoginForm


class AdminLoginForm(ThrottledLoginForm, AdminAuthenticationForm):
    """The admin's sign-in, throttled like the portal's."""


admin.site.login_form = AdminLoginForm


def staff_caller(request) -> Caller:
    return Caller(user=request.user)


class TenantOwnedAdmin(admin.ModelAdmin):
    def get_queryset(self, request):
        # Staff see every tenant's rows; the admin is guarded by is_staff.
        return self.model.dangerously_unscoped.all()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        if hasattr(related, "dangerously_unscoped"):
            # Built here because ForeignKey.formfield() evaluates the scoped default manager
            # before it looks at a given queryset. Staff pick across tenants.
            return forms.ModelChoiceField(
                queryset=related.dangerously_unscoped.all(),
                required=not db_field.blank,
                label=capfirst(db_field.verbose_name),
                help_text=db_field.help_text,
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "parent", "brand_name", "brand_colour", "created_at"]
    search_fields = ["name", "public_id"]
    readonly_fields = ["public_id"]


@admin.action(description="Suspend the selected tenants")
def suspend_tenants(modeladmin, request, queryset):
    for tenant in queryset.filter(status=Tenant.Status.ACTIVE):
        services.tenant_suspend(
            tenant=tenant, reason="Suspended by platform staff.", actor=staff_caller(request)
        )


@admin.action(description="Reactivate the selected tenants")
def reactivate_tenants(modeladmin, request, queryset):
    for tenant in queryset.filter(status=Tenant.Status.SUSPENDED):
        services.tenant_reactivate(tenant=tenant, actor=staff_caller(request))


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "partner", "status", "created_at"]
    list_filter = ["status", "partner"]
    search_fields = ["name", "public_id"]
    # Status changes go through the actions, so they are audited.
    readonly_fields = ["public_id", "status", "suspended_reason", "suspended_at"]
    actions = [suspend_tenants, reactivate_tenants]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "full_name"]
    fieldsets = [
        (None, {"fields": ["email", "password", "full_name"]}),
        (
            "Permissions",
            {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]},
        ),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


@admin.register(Membership)
class MembershipAdmin(TenantOwnedAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]


@admin.register(PartnerMembership)
class PartnerMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "partner", "role", "created_at"]


@admin.register(Project)
class ProjectAdmin(TenantOwnedAdmin):
    list_display = ["name", "tenant", "created_at"]
    search_fields = ["name", "public_id"]


@admin.action(description="Revoke the selected API keys")
def revoke_keys(modeladmin, request, queryset):
    for key in queryset.filter(revoked_at__isnull=True):
        services.api_key_revoke(api_key=key, actor=staff_caller(request))


@admin.register(ApiKey)
class ApiKeyAdmin(TenantOwnedAdmin):
    list_display = ["name", "display_prefix", "tenant", "role", "revoked_at", "last_used_at"]
    list_filter = ["mode", "role"]
    exclude = ["secret_hash"]
    actions = [revoke_keys]


@admin.register(Invitation)
class InvitationAdmin(TenantOwnedAdmin):
    list_display = ["email", "tenant", "role", "status", "created_at", "expires_at"]
    exclude = ["token_hash"]


@admin.register(AuditEvent)
class AuditEventAdmin(TenantOwnedAdmin):
    list_display = ["created_at", "tenant", "actor", "action", "target_type", "target_id"]
    list_filter = ["action"]
    search_fields = ["actor", "target_id", "public_id"]
