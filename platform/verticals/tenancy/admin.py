"""Django admin for staff. Staff operate across tenants, so admin lists are unscoped by design."""

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.text import capfirst

from verticals.tenancy.models import (
    ApiKey, AuditEvent, Invitation, Membership, Partner, PartnerMembership, Project, Tenant, User,
)
from verticals.tenancy.scoping import tenant_context


class TenantOwnedAdminForm(forms.ModelForm):
    def _post_clean(self):
        # Uniqueness is checked among the row's own tenant's rows (through the scoped manager).
        tenant = self.cleaned_data.get("tenant") or getattr(self.instance, "tenant", None)
        with tenant_context(tenant):
            super()._post_clean()


class UnscopedAdmin(admin.ModelAdmin):
    form = TenantOwnedAdminForm

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


class ReadOnlyAdmin(UnscopedAdmin):
    """Rows that only the product's own flows may write (secrets shown once, signed links)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    list_display = ["name", "parent", "brand_name", "brand_colour", "created_at"]
    search_fields = ["name", "public_id"]
    readonly_fields = ["public_id"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "partner", "status", "created_at"]
    list_filter = ["status", "partner"]
    search_fields = ["name", "public_id"]
    readonly_fields = ["public_id"]


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "full_name"]
    fieldsets = [
        (None, {"fields": ["email", "password", "full_name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]


@admin.register(Membership)
class MembershipAdmin(UnscopedAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]


@admin.register(PartnerMembership)
class PartnerMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "partner", "role", "created_at"]


@admin.register(Project)
class ProjectAdmin(UnscopedAdmin):
    list_display = ["name", "tenant", "created_at"]
    search_fields = ["name", "public_id"]


@admin.action(description="Revoke the selected API keys")
def revoke_keys(modeladmin, request, queryset):
    from verticals.tenancy.services import api_key_revoke

    for key in queryset.filter(revoked_at__isnull=True):
        api_key_revoke(api_key=key)


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ["name", "display_prefix", "tenant", "role", "revoked_at", "last_used_at"]
    list_filter = ["mode", "role"]
    exclude = ["secret_hash"]
    actions = [revoke_keys]


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    list_display = ["email", "tenant", "role", "status", "created_at", "expires_at"]
    exclude = ["token_hash"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "tenant", "actor", "action", "target_type", "target_id"]
    list_filter = ["action"]
    search_fields = ["actor", "target_id", "public_id"]

    def has_delete_permission(self, request, obj=None):
        return False
