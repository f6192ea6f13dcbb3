"""A partner's white label (name, colour, support address, logo), as its tenants see it."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.db import transaction

from verticals.tenancy.audit import partner_audit_record
from verticals.tenancy.brand import Logo
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import Partner

BRAND_FIELDS = ("brand_name", "brand_colour", "support_email")


def partner_brand_update(
    *,
    partner: Partner,
    actor: Caller | None,
    changes: dict,
    logo: Logo | None = None,
    remove_logo: bool = False,
    logo_name: str | None = None,
) -> Partner:
    """Change the brand: `changes` of BRAND_FIELDS, a checked `logo` (tenancy.brand.logo_checked)
    or `remove_logo`; the logo is stored as `logo_name` (default: the partner's id). The partner's
    trail records what changed, in the same transaction."""
    unknown = sorted(set(changes) - set(BRAND_FIELDS))
    if unknown:
        raise ValueError(f"Not brand fields: {', '.join(unknown)}.")
    with transaction.atomic():
        for key, value in changes.items():
            setattr(partner, key, value)
        if remove_logo:
            # The file stays: invoices issued under this brand keep naming it.
            partner.logo = ""
        partner.full_clean(
            exclude=["parent", "name", "public_id", "logo"],
            validate_unique=False,
            validate_constraints=False,
        )
        if logo is not None:  # stored once the rest is known to be valid
            partner.logo.save(
                logo_name or f"{partner.public_id}.{logo.extension}",
                ContentFile(logo.data),
                save=False,
            )
        partner.save()
        changed = sorted(changes) + (["logo"] if logo is not None or remove_logo else [])
        partner_audit_record(
            partner=partner,
            actor=actor,
            action="brand.update",
            target=partner,
            details={
                "changed": changed,
                **{key: changes[key] for key in sorted(changes)},
                **({"logo": partner.logo.name or None} if "logo" in changed else {}),
            },
        )
    return partner
