"""Query filters for list endpoints."""

import django_filters
from django.db.models import Q
from django.utils import timezone

from verticals.tenancy.models import ApiKey, AuditEvent, Membership, Project, Tenant


class ProjectFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Project
        fields = ["name", "created_after", "created_before"]


class MemberFilter(django_filters.FilterSet):
    role = django_filters.CharFilter()
    email = django_filters.CharFilter(field_name="user__email", lookup_expr="icontains")

    class Meta:
        model = Membership
        fields = ["role", "email"]


class ApiKeyFilter(django_filters.FilterSet):
    active = django_filters.BooleanFilter(method="filter_active")
    mode = django_filters.CharFilter()

    class Meta:
        model = ApiKey
        fields = ["active", "mode"]

    def filter_active(self, queryset, name, value):
        now = timezone.now()
        active = Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        return queryset.filter(active) if value else queryset.exclude(active)


class TenantFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Tenant.Status.choices)
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Tenant
        fields = ["status", "name"]


class AuditEventFilter(django_filters.FilterSet):
    action = django_filters.CharFilter()
    target_id = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["action", "target_id", "since", "until"]
