"""REST resources under /api/v1/: me, projects, members, invitations, API keys, audit events, partner console."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from verticals.api import filters
from verticals.api.base import CallerAPIView, PartnerScopedViewSet, TenantScopedViewSet
from verticals.api.billing.partner import PartnerTenantPlanCreateSerializer, default_plan
from verticals.api.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    AuditEventSerializer,
    InvitationCreateSerializer,
    InvitationSerializer,
    MemberRoleSerializer,
    MemberSerializer,
    PartnerTenantUpdateSerializer,
    ProjectSerializer,
    SuspendSerializer,
    TenantSerializer,
)
from verticals.billing import services as billing_services
from verticals.tenancy import services
from verticals.tenancy.models import (
    ApiKey,
    AuditEvent,
    Invitation,
    Membership,
    Partner,
    Project,
    Tenant,
)


class MeView(CallerAPIView):
    """Who is calling: the user or API key, the current tenant, role, scopes and permissions."""

    @extend_schema(responses=inline_serializer("Me", {"type": serializers.CharField()}))
    def get(self, request):
        caller = self.caller
        tenant = caller.tenant
        body = {
            "type": "api_key" if caller.api_key else "user",
            "user": {
                "id": caller.user.public_id,
                "email": caller.user.email,
                "full_name": caller.user.full_name,
            }
            if caller.user
            else None,
            "api_key": ApiKeySerializer(caller.api_key).data if caller.api_key else None,
            "tenant": TenantSerializer(tenant).data if tenant else None,
            "role": caller.role,
            "scopes": sorted(caller.scopes) if caller.scopes is not None else None,
            "permissions": caller.permissions(),
            "tenants": [
                {
                    "id": m.tenant.public_id,
                    "name": m.tenant.name,
                    "role": m.role,
                    "status": m.tenant.status,
                }
                for m in caller.memberships
            ],
            "partners": [
                {"id": pm.partner.public_id, "name": pm.partner.name, "role": pm.role}
                for pm in caller.partner_memberships()
            ],
        }
        return Response(body)


class ProjectViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TenantScopedViewSet,
):
    """Projects of the caller's tenant."""

    model = Project
    serializer_class = ProjectSerializer
    filterset_class = filters.ProjectFilter
    ordering_fields = ["created_at", "name"]
    lookup_url_kwarg = "project_id"
    project_field = "pk"
    actions = {
        "list": "project.view",
        "retrieve": "project.view",
        "create": "project.create",
        "update": "project.update",
        "partial_update": "project.update",
        "destroy": "project.delete",
    }

    def scope_queryset(self, queryset):
        return queryset.select_related("created_by")

    def perform_create(self, serializer):
        serializer.instance = services.project_create(
            tenant=self.caller.tenant, actor=self.caller, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = services.project_update(
            project=serializer.instance, actor=self.caller, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.project_delete(project=instance, actor=self.caller)


class MemberViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, TenantScopedViewSet
):
    """Members of the caller's tenant: change role, remove. People join through invitations."""

    model = Membership
    serializer_class = MemberSerializer
    filterset_class = filters.MemberFilter
    ordering_fields = ["created_at", "role"]
    lookup_url_kwarg = "member_id"
    actions = {
        "list": "member.view",
        "retrieve": "member.view",
        "partial_update": "member.change_role",
        "destroy": "member.remove",
    }

    def scope_queryset(self, queryset):
        return queryset.select_related("user")

    @extend_schema(request=MemberRoleSerializer, responses=MemberSerializer)
    def partial_update(self, request, member_id=None):
        membership = self.get_object()
        payload = MemberRoleSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        membership = services.member_change_role(
            caller=self.caller, membership=membership, **payload.validated_data
        )
        return Response(MemberSerializer(membership).data)

    def perform_destroy(self, instance):
        services.member_remove(caller=self.caller, membership=instance)


class InvitationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Invitations to the caller's tenant: the invitee joins by accepting the emailed link."""

    model = Invitation
    serializer_class = InvitationSerializer
    filterset_class = filters.InvitationFilter
    ordering_fields = ["created_at", "email"]
    lookup_url_kwarg = "invitation_id"
    actions = {
        "list": "member.view",
        "retrieve": "member.view",
        "create": "member.invite",
        "resend": "member.invite",
        "revoke": "member.invite",
    }

    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitationSerializer})
    def create(self, request):
        payload = InvitationCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        invitation = services.invitation_create(caller=self.caller, **payload.validated_data)
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["post"])
    def resend(self, request, invitation_id=None):
        invitation = services.invitation_resend(invitation=self.get_object(), actor=self.caller)
        return Response(InvitationSerializer(invitation).data)

    @extend_schema(request=None, responses=InvitationSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, invitation_id=None):
        invitation = services.invitation_revoke(invitation=self.get_object(), actor=self.caller)
        return Response(InvitationSerializer(invitation).data)


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """API keys of the caller's tenant. The secret is in the create response only."""

    model = ApiKey
    serializer_class = ApiKeySerializer
    filterset_class = filters.ApiKeyFilter
    ordering_fields = ["created_at", "name", "last_used_at"]
    lookup_url_kwarg = "key_id"
    project_field = "project"
    actions = {
        "list": "api_key.view",
        "retrieve": "api_key.view",
        "create": "api_key.create",
        "revoke": "api_key.revoke",
    }

    def scope_queryset(self, queryset):
        return queryset.select_related("project", "created_by")

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request):
        payload = ApiKeyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        key, secret = services.api_key_create(caller=self.caller, **payload.validated_data)
        key.secret = secret
        return Response(ApiKeyCreatedSerializer(key).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ApiKeySerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, key_id=None):
        key = services.api_key_revoke(api_key=self.get_object(), actor=self.caller)
        return Response(ApiKeySerializer(key).data)


class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """The tenant's audit log: who did what to which object, newest first."""

    model = AuditEvent
    serializer_class = AuditEventSerializer
    filterset_class = filters.AuditEventFilter
    ordering_fields = ["created_at"]
    lookup_url_kwarg = "event_id"
    actions = {"list": "audit.view", "retrieve": "audit.view"}


class PartnerTenantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PartnerScopedViewSet):
    """The partner console: customer tenants of the partners the caller belongs to."""

    model = Tenant
    serializer_class = TenantSerializer
    filterset_class = filters.TenantFilter
    ordering_fields = ["created_at", "name"]
    lookup_url_kwarg = "tenant_id"
    actions = {
        "list": "partner.tenant.view",
        "retrieve": "partner.tenant.view",
        "create": "partner.tenant.create",
        "partial_update": "partner.tenant.update",
        "suspend": "partner.tenant.suspend",
        "reactivate": "partner.tenant.reactivate",
    }

    def get_queryset(self):
        return super().get_queryset().select_related("partner")

    @extend_schema(request=PartnerTenantPlanCreateSerializer, responses={201: TenantSerializer})
    def create(self, request):
        """Create a customer tenant; with `plan` (and `trial_days`) it starts on that plan, without
        on the BILLING_DEFAULT_PLAN (none when that is empty or names no plan offered)."""
        payload = PartnerTenantPlanCreateSerializer(data=request.data)
        allowed = Partner.objects.filter(
            pk__in=self.caller.partner_ids_for("partner.tenant.create")
        )
        payload.fields["partner"].queryset = allowed
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        if data.get("plan") is None:
            data = {**data, "plan": default_plan()}
        partner = data.get("partner")
        if partner is None:
            direct = [
                pm.partner for pm in self.caller.partner_memberships() if pm.partner in allowed
            ]
            if len(direct) != 1:
                raise serializers.ValidationError(
                    {"partner": "You administer several partners: name one by id."}
                )
            partner = direct[0]
        tenant = billing_services.partner_tenant_create(
            partner=partner,
            name=data["name"],
            owner_email=data.get("owner_email"),
            plan=data.get("plan"),
            trial_days=data.get("trial_days") or 0,
            actor=self.caller,
        )
        return Response(TenantSerializer(tenant).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PartnerTenantUpdateSerializer, responses=TenantSerializer)
    def partial_update(self, request, tenant_id=None):
        tenant = self.get_object()
        payload = PartnerTenantUpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        return Response(
            TenantSerializer(
                services.tenant_update(tenant=tenant, actor=self.caller, **payload.validated_data)
            ).data
        )

    @extend_schema(request=SuspendSerializer, responses=TenantSerializer)
    @action(detail=True, methods=["post"])
    def suspend(self, request, tenant_id=None):
        tenant = self.get_object()
        payload = SuspendSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        return Response(
            TenantSerializer(
                services.tenant_suspend(tenant=tenant, actor=self.caller, **payload.validated_data)
            ).data
        )

    @extend_schema(request=None, responses=TenantSerializer)
    @action(detail=True, methods=["post"])
    def reactivate(self, request, tenant_id=None):
        return Response(
            TenantSerializer(
                services.tenant_reactivate(tenant=self.get_object(), actor=self.caller)
            ).data
        )
