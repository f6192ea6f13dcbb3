"""Django admin for staff. Staff operate across tenants, so admin lists are unscoped by design."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from verticals.tenancy.models import ApiKey, AuditEvent, Membership, Partner, PartnerMembership, Project, Tenant, User


class UnscopedAdmin(admin.ModelAdmin):
    def get_queryset(self, request):
        # Staff see every tenant's rows; the admin is guarded by is_staff.
        return self.model.dangerously_unscoped.all()


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


@admin.register(ApiKey)
class ApiKeyAdmin(UnscopedAdmin):
    list_display = ["name", "display_prefix", "tenant", "role", "revoked_at", "last_used_at"]
    readonly_fields = ["lookup", "secret_hash", "last_used_at", "created_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(UnscopedAdmin):
    list_display = ["created_at", "tenant", "actor", "action", "target_type", "target_id"]
    list_filter = ["action"]
    search_fields = ["actor", "target_id", "public_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
