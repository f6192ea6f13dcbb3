"""Who may do what: the role table that docs/roles.md shows, enforced from here.

A tenant member acts with its membership role; an API key acts with the role it was
given (never more than its creator's) and must also hold the action's scope.
"""

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    DEVELOPER = "developer", "Developer"
    VIEWER = "viewer", "Viewer"
    BILLING = "billing", "Billing"


class PartnerRole(models.TextChoices):
    ADMIN = "partner_admin", "Partner admin"
    VIEWER = "partner_viewer", "Partner viewer"


class Scope(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    PREDICT = "predict", "Predict"
    TRAIN = "train", "Train"
    BILLING = "billing", "Billing"


_ALL = frozenset(Role)
_BUILDERS = frozenset({Role.OWNER, Role.ADMIN, Role.DEVELOPER})
_MANAGERS = frozenset({Role.OWNER, Role.ADMIN})

# action -> (roles allowed, scope an API key needs)
TENANT_ACTIONS: dict[str, tuple[frozenset[Role], Scope]] = {
    "project.view": (_ALL, Scope.READ),
    "project.create": (_BUILDERS, Scope.WRITE),
    "project.update": (_BUILDERS, Scope.WRITE),
    "project.delete": (_MANAGERS, Scope.WRITE),
    "member.view": (_ALL, Scope.READ),
    "member.invite": (_MANAGERS, Scope.WRITE),
    "member.change_role": (_MANAGERS, Scope.WRITE),
    "member.remove": (_MANAGERS, Scope.WRITE),
    "member.manage_owners": (frozenset({Role.OWNER}), Scope.WRITE),
    "api_key.view": (_BUILDERS, Scope.READ),
    "api_key.create": (_BUILDERS, Scope.WRITE),
    "api_key.revoke": (_BUILDERS, Scope.WRITE),
    "audit.view": (_MANAGERS, Scope.READ),
    "job.view": (_ALL - {Role.BILLING}, Scope.READ),
    "job.create": (_BUILDERS, Scope.TRAIN),
    "job.cancel": (_BUILDERS, Scope.TRAIN),
    "task.view": (_ALL, Scope.READ),
    "dataset.view": (_ALL - {Role.BILLING}, Scope.READ),
    "dataset.create": (_BUILDERS, Scope.WRITE),
    "dataset.delete": (_BUILDERS, Scope.WRITE),
    "dataset.download": (_BUILDERS, Scope.READ),
    "model.view": (_ALL - {Role.BILLING}, Scope.READ),
    "model.import": (_BUILDERS, Scope.WRITE),
    "model.delete": (_BUILDERS, Scope.WRITE),
    "model.download": (_BUILDERS, Scope.READ),
    "model.predict": (_BUILDERS, Scope.PREDICT),
    "usage.view": (_ALL, Scope.READ),
    "plan.view": (_ALL, Scope.READ),
    "invoice.view": (frozenset({Role.OWNER, Role.ADMIN, Role.BILLING}), Scope.BILLING),
    "plan.change": (frozenset({Role.OWNER, Role.BILLING}), Scope.BILLING),
}

PARTNER_ACTIONS: dict[str, frozenset[PartnerRole]] = {
    "partner.tenant.view": frozenset(PartnerRole),
    "partner.tenant.create": frozenset({PartnerRole.ADMIN}),
    "partner.tenant.update": frozenset({PartnerRole.ADMIN}),
    "partner.tenant.suspend": frozenset({PartnerRole.ADMIN}),
    "partner.tenant.reactivate": frozenset({PartnerRole.ADMIN}),
    "partner.tenant.plan": frozenset({PartnerRole.ADMIN}),
    "partner.billing.view": frozenset(PartnerRole),
    "partner.price.update": frozenset({PartnerRole.ADMIN}),
    "partner.brand.update": frozenset({PartnerRole.ADMIN}),
}


# What a key restricted to one project may not do: these act on the whole tenant.
TENANT_WIDE_ACTIONS = frozenset(
    {
        "project.create",
        "member.view",
        "member.invite",
        "member.change_role",
        "member.remove",
        "member.manage_owners",
        "audit.view",
        "invoice.view",
        "plan.change",
    }
)

# What the audit log records (verticals.tenancy.services writes them).
AUDITED_ACTIONS = frozenset(
    {
        "project.create",
        "project.update",
        "project.delete",
        "member.invite",
        "member.invite_resend",
        "member.invite_revoke",
        "member.join",
        "member.change_role",
        "member.remove",
        "api_key.create",
        "api_key.revoke",
        "job.create",
        "job.cancel",
        "dataset.create",
        "dataset.delete",
        "model.import",
        "model.delete",
        "tenant.create",
        "tenant.update",
        "tenant.suspend",
        "tenant.reactivate",
        "subscription.change",
        "contract.create",
        "invoice.credit",
        "auth.login_throttled",
        "api_key.throttled",
    }
)

# What a partner's own trail records (tenancy.audit.partner_audit_record: the brand, billing's
# partner services).
PARTNER_AUDITED_ACTIONS = frozenset(
    {"brand.update", "price_book.retail", "tenant.create", "tenant.plan.change"}
)


def role_allows(role: str | None, action: str) -> bool:
    if role is None:
        return False
    roles, _scope = TENANT_ACTIONS[action]
    return role in roles


def scope_for(action: str) -> Scope:
    return TENANT_ACTIONS[action][1]


def partner_role_allows(role: str | None, action: str) -> bool:
    return role is not None and role in PARTNER_ACTIONS[action]


def actions_of(role: str) -> frozenset[str]:
    return frozenset(action for action in TENANT_ACTIONS if role_allows(role, action))


def grantable_roles(granter: str) -> list[Role]:
    """Roles that `granter` may give to a member or an API key: never more than it holds."""
    held = actions_of(granter)
    return [role for role in Role if actions_of(role) <= held]
