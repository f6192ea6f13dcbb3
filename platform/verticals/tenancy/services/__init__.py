"""Writes on tenancy objects. Views and commands call these; nothing else writes these rows.

Every write that an admin would want to trace also writes an audit event (tenancy.audit).
"""

from verticals.tenancy.services.api_keys import api_key_create, api_key_revoke
from verticals.tenancy.services.brand import partner_brand_update
from verticals.tenancy.services.invitations import (
    invitation_accept,
    invitation_create,
    invitation_find,
    invitation_resend,
    invitation_revoke,
    invite,
    user_create_from_invitation,
)
from verticals.tenancy.services.members import member_change_role, member_remove
from verticals.tenancy.services.projects import project_create, project_delete, project_update
from verticals.tenancy.services.tenants import (
    partner_get_or_create,
    partner_root,
    tenant_create,
    tenant_reactivate,
    tenant_suspend,
    tenant_update,
)

__all__ = [
    "api_key_create",
    "api_key_revoke",
    "invitation_accept",
    "invitation_create",
    "invitation_find",
    "invitation_resend",
    "invitation_revoke",
    "invite",
    "user_create_from_invitation",
    "member_change_role",
    "member_remove",
    "project_create",
    "project_delete",
    "project_update",
    "partner_brand_update",
    "partner_get_or_create",
    "partner_root",
    "tenant_create",
    "tenant_reactivate",
    "tenant_suspend",
    "tenant_update",
]
