"""Staff view of jobs: everything, tracebacks included (customers see only the message)."""

from django.contrib import admin
from django.forms.models import BaseInlineFormSet

from verticals.jobs.models import Job, JobEvent, WebhookDelivery
from verticals.tenancy.scoping import tenant_context


class JobEventFormSet(BaseInlineFormSet):
    def add_fields(self, form, index):
        # The primary-key field's queryset comes from the scoped manager: build it in the job's tenant.
        with tenant_context(self.instance.tenant):
            super().add_fields(form, index)


class JobEventInline(admin.TabularInline):
    model = JobEvent
    formset = JobEventFormSet
    fields = ["seq", "type", "data", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["-seq"]

    def get_queryset(self, request):
        # Staff read every tenant's events in the admin.
        return JobEvent.dangerously_unscoped.all()


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "tenant",
        "project",
        "kind",
        "status",
        "attempt",
        "worker",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "kind", "queue"]
    search_fields = ["public_id", "tenant__name", "project__name"]
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [JobEventInline]

    def get_queryset(self, request):
        # Staff operate workers for all tenants: the admin is the one unscoped view of jobs.
        return Job.dangerously_unscoped.select_related("tenant", "project")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # read-only: a save would write the whole row under a running job


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "public_id",
        "job",
        "event_type",
        "status",
        "attempts",
        "response_status",
        "created_at",
    ]
    list_filter = ["status", "event_type"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def get_queryset(self, request):
        # Staff look into failing deliveries of any tenant.
        return WebhookDelivery.dangerously_unscoped.select_related("job")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # read-only: a save would write the whole row under a running job
