"""Base classes every API view stands on: the only way an API view reaches tenant rows."""

from rest_framework import viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.views import APIView

from verticals.api.inputs import refusing_unstorable
from verticals.api.permissions import PartnerActionPermission, TenantActionPermission
from verticals.tenancy.models import Project
from verticals.tenancy.scoping import partner_scope


def required_action_of(view) -> str | None:
    """The role-table action a viewset's current DRF action needs.

    None for a method the route does not serve (the view answers 405) and for OPTIONS (which
    describes the route, no rows). Any other unmapped action fails loudly rather than open.
    """
    if view.action in (None, "metadata"):
        return None
    return view.actions[view.action]


class CallerMixin:
    """Every API view stands on this (tests/api/test_cross_tenant_probe.py checks it)."""

    @property
    def caller(self):
        return self.request._request.caller

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # No parameter of the API takes several values: a repeated one is a mistake, not a choice
        # of which to read.
        repeated = sorted(name for name, values in request.query_params.lists() if len(values) > 1)
        if repeated:
            raise ValidationError({name: ["Give this parameter once."] for name in repeated})

    def get_parsers(self):
        # Whatever parsers a view names, a body holding a value no database holds is refused by them.
        return [refusing_unstorable(type(parser))() for parser in super().get_parsers()]


class TenantScopedViewSet(CallerMixin, viewsets.GenericViewSet):
    """Querysets come from the model's scoped manager (current tenant, or fail closed).

    Subclasses name the model, the tenant action per DRF action, and, for models that hang
    off a project, the path to it so that a key restricted to one project sees only that.
    """

    model = None
    actions: dict[str, str] = {}
    project_field: str | None = None
    lookup_field = "public_id"
    permission_classes = [TenantActionPermission]

    def required_action(self) -> str | None:
        return required_action_of(self)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # OpenAPI generation: no request, no rows
            # an empty queryset reads no tenant's rows
            return self.model.dangerously_unscoped.none()
        queryset = self.model.objects.all()
        project = self.caller.project if self.caller else None
        if project is not None and self.project_field:
            queryset = queryset.filter(**{self.project_field: project.pk})
        return self.scope_queryset(queryset)

    def scope_queryset(self, queryset):
        """Narrow or annotate further (select_related …); the tenant filter is already applied."""
        return queryset


class ProjectScopedViewSet(TenantScopedViewSet):
    """Rows that hang off the project in the path (`projects/{project_id}/…`).

    The project comes from the tenant's scoped manager (and must be the key's own when the key
    is restricted to one project): another tenant's project answers 404 like a missing one.
    """

    project_field = "project"

    def get_project(self):
        from django.http import Http404

        if not hasattr(self, "_project"):
            projects = Project.objects.filter(public_id=self.kwargs.get("project_id", ""))
            restricted = self.caller.project if self.caller else None
            if restricted is not None:
                projects = projects.filter(pk=restricted.pk)
            project = projects.first()
            if project is None:
                raise Http404
            self._project = project
        return self._project

    def scope_queryset(self, queryset):
        return queryset.filter(**{self.project_field: self.get_project()})


class CatalogViewSet(CallerMixin, viewsets.GenericViewSet):
    """Platform-owned rows every tenant may read (the model garden): no tenant filter applies,
    but the caller must be signed in and allowed the action."""

    model = None
    actions: dict[str, str] = {}
    lookup_field = "public_id"
    permission_classes = [TenantActionPermission]

    def required_action(self) -> str | None:
        return required_action_of(self)

    def get_queryset(self):
        return self.model.objects.all()


class PartnerScopedViewSet(CallerMixin, viewsets.GenericViewSet):
    """Rows of the partners (and sub-partners) on which the caller's partner role allows the action."""

    model = None
    actions: dict[str, str] = {}
    partner_field = "partner_id"
    lookup_field = "public_id"
    permission_classes = [PartnerActionPermission]

    def required_action(self) -> str | None:
        return required_action_of(self)

    def dispatch(self, request, *args, **kwargs):
        # The database lets through the rows of the caller's partners' tenants only (the second
        # wall); each query below still filters by the partners the action allows.
        caller = getattr(request, "caller", None)
        partner_ids = [
            pid
            for m in (caller.partner_memberships() if caller else [])
            for pid in m.partner.descendant_ids()
        ]
        with partner_scope(partner_ids):
            return super().dispatch(request, *args, **kwargs)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # OpenAPI generation: no request, no rows
            return self.model.objects.none()
        partner_ids = self.caller.partner_ids_for(self.required_action() or self.actions["list"])
        return self.model.objects.filter(**{f"{self.partner_field}__in": partner_ids})


class CallerAPIView(CallerMixin, APIView):
    """A view about the caller itself (no tenant rows): authentication is all it needs."""

    permission_classes = [TenantActionPermission]

    def required_action(self) -> str | None:
        return None
