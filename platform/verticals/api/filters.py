"""Query filters for list endpoints."""

import django_filters
from django import forms
from django.db.models import Q
from django.utils import timezone
from django_filters.fields import IsoDateTimeField

from verticals.billing.moments import as_utc
from verticals.jobs.models import Job
from verticals.registry.models import Dataset, ModelVersion
from verticals.tenancy.models import ApiKey, AuditEvent, Invitation, Membership, Project, Tenant


class _BoundedIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 with an offset clocks use, within datetime's range once in UTC; passed on in UTC."""

    def to_python(self, value):
        result = super().to_python(value)
        if result is None:
            return None
        try:
            return as_utc(result)
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = _BoundedIsoDateTimeField


class ProjectFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Project
        fields = ["name", "created_after", "created_before"]


class MemberFilter(django_filters.FilterSet):
    role = django_filters.CharFilter()
    email = django_filters.CharFilter(field_name="user__email", lookup_expr="icontains")

    class Meta:
        model = Membership
        fields = ["role", "email"]


class InvitationFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Invitation.Status.choices, method="filter_status")
    email = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Invitation
        fields = ["status", "email"]

    def filter_status(self, queryset, name, value):
        now = timezone.now()
        open_ = Q(accepted_at__isnull=True, revoked_at__isnull=True)
        return queryset.filter(
            {
                Invitation.Status.ACCEPTED: Q(accepted_at__isnull=False),
                Invitation.Status.REVOKED: Q(accepted_at__isnull=True, revoked_at__isnull=False),
                Invitation.Status.EXPIRED: open_ & Q(expires_at__lte=now),
                Invitation.Status.PENDING: open_ & Q(expires_at__gt=now),
            }[value]
        )


class ApiKeyFilter(django_filters.FilterSet):
    active = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")], method="filter_active"
    )
    mode = django_filters.CharFilter()

    class Meta:
        model = ApiKey
        fields = ["active", "mode"]

    def filter_active(self, queryset, name, value):
        now = timezone.now()
        active = Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        return queryset.filter(active) if value == "true" else queryset.exclude(active)


class TenantFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Tenant.Status.choices)
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Tenant
        fields = ["status", "name"]


class AuditEventFilter(django_filters.FilterSet):
    action = django_filters.CharFilter()
    target_id = django_filters.CharFilter()
    since = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "target_id", "since", "until"]


class JobFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Job.Status.choices)
    # Not a choice: a job keeps its kind after the runner that made it is gone.
    kind = django_filters.CharFilter()
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Job
        fields = ["status", "kind", "created_after", "created_before"]


class DatasetFilter(django_filters.FilterSet):
    task = django_filters.CharFilter()
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Dataset
        fields = ["task", "name"]


class ModelVersionFilter(django_filters.FilterSet):
    task = django_filters.CharFilter()
    name = django_filters.CharFilter()
    source = django_filters.ChoiceFilter(choices=ModelVersion.Source.choices)

    class Meta:
        model = ModelVersion
        fields = ["task", "name", "source"]
