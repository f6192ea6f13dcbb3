"""Shared fixtures: real objects built through the services, two tenants under two partners."""

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from verticals.tenancy.caller import Caller
from verticals.tenancy.models import ApiKey, Invitation, Membership, Partner, PartnerMembership, Project, Tenant, User
from verticals.tenancy.roles import PartnerRole, Role, Scope
from verticals.tenancy.scoping import tenant_context
from verticals.tenancy.services import api_key_create, invite, partner_root, project_create, tenant_create

PASSWORD = "correct-horse-battery-9"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_user(email: str, password: str = PASSWORD) -> User:
    return User.objects.create_user(email=email, password=password)


def make_member(tenant: Tenant, email: str, role: str) -> Membership:
    with tenant_context(tenant):
        return Membership.objects.create(tenant=tenant, user=make_user(email), role=role)


def make_key(tenant: Tenant, *, role: str = Role.OWNER, scopes=None, project=None, user=None, **extra) -> tuple[ApiKey, str]:
    with tenant_context(tenant):
        caller = Caller(user=user, tenant=tenant, role=Role.OWNER)
        return api_key_create(
            caller=caller, name=f"key-{role}", scopes=list(scopes or Scope.values), role=role, project=project, **extra
        )


@dataclass
class World:
    """One partner with one tenant and what a tenant has: owner, project, key, partner admin."""

    partner: Partner
    tenant: Tenant
    owner: User
    membership: Membership
    project: Project
    key: ApiKey
    secret: str
    partner_admin: User
    invitation: Invitation

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.secret}")
        return client

    def session(self) -> APIClient:
        client = APIClient(enforce_csrf_checks=False)
        client.force_login(self.owner)
        return client

    def partner_session(self) -> APIClient:
        client = APIClient()
        client.force_login(self.partner_admin)
        return client


def build_world(label: str, brand_colour: str = "#1f6feb") -> World:
    root = partner_root()
    partner = Partner.objects.create(name=f"Partner {label}", brand_name=f"Brand {label}", parent=root, brand_colour=brand_colour)
    tenant = tenant_create(partner=partner, name=f"Tenant {label}")
    owner_membership = make_member(tenant, f"owner-{label.lower()}@example.com", Role.OWNER)
    with tenant_context(tenant):
        project = project_create(tenant=tenant, name=f"Project {label}")
    key, secret = make_key(tenant, user=owner_membership.user)
    partner_admin = make_user(f"partner-admin-{label.lower()}@example.com")
    PartnerMembership.objects.create(partner=partner, user=partner_admin, role=PartnerRole.ADMIN)
    invitation = invite(tenant=tenant, email=f"invitee-{label.lower()}@example.com", role=Role.VIEWER, actor=None)
    return World(partner, tenant, owner_membership.user, owner_membership, project, key, secret, partner_admin, invitation)


@pytest.fixture
def world_a(db) -> World:
    return build_world("A")


@pytest.fixture
def world_b(db) -> World:
    return build_world("B", brand_colour="#8250df")
