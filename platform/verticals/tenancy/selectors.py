"""Reading tenancy rows that span tenants by nature (a user's own memberships)."""

from __future__ import annotations

from verticals.tenancy.models import Membership, User


def user_memberships(user: User) -> list[Membership]:
    # A user's own memberships span tenants by nature; filtering by the user is the scope.
    return list(
        Membership.dangerously_unscoped.filter(user=user)
        .select_related("tenant__partner")
        .order_by("created_at", "pk")
    )
