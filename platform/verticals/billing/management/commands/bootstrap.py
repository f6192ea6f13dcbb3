"""`manage.py bootstrap`: create what is missing for a partner, tenant, owner and first project."""

import json
import secrets

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from verticals.billing.catalog import standing
from verticals.billing.models import Plan, Subscription
from verticals.billing.services import subscribe
from verticals.tenancy.caller import Caller
from verticals.tenancy.models import Membership, Project, Tenant, User
from verticals.tenancy.roles import Role, Scope
from verticals.tenancy.scoping import tenant_context
from verticals.tenancy.services import (
    api_key_create,
    partner_get_or_create,
    project_create,
    tenant_create,
)

FIRST_PROJECT_NAME = "Default project"


class Command(BaseCommand):
    help = (
        "Create whatever is missing of a partner, a tenant, its owner and a first project, "
        "then print one JSON object with their ids and a new API key. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--partner",
            required=True,
            help="Partner (reseller) name; the platform's own name for direct customers.",
        )
        parser.add_argument("--tenant", required=True, help="Customer tenant name.")
        parser.add_argument("--email", required=True, help="Email of the tenant's owner (login).")
        parser.add_argument(
            "--password",
            help="Set this password (default: keep an existing one, generate a new user's).",
        )
        parser.add_argument(
            "--plan",
            help="Put a new tenant on this plan (code, e.g. free, team, enterprise); "
            "an existing tenant keeps its plan. Default: no plan (no limits, not billed).",
        )

    def handle(
        self,
        *args,
        partner: str,
        tenant: str,
        email: str,
        password: str | None,
        plan: str | None = None,
        **options,
    ):
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"--email {email!r} is not an email address.") from None
        plan_obj = None
        if plan:
            plan_obj = Plan.objects.filter(code=plan, is_active=True).first()
            if plan_obj is None:
                known = (
                    ", ".join(Plan.objects.filter(is_active=True).values_list("code", flat=True))
                    or "none"
                )
                raise CommandError(f"--plan {plan!r} is not an offered plan; offered: {known}.")
        created: list[str] = []
        with transaction.atomic():
            partner_obj, was_created = partner_get_or_create(name=partner)
            if was_created:
                created.append("partner")
            tenant_obj = Tenant.objects.filter(partner=partner_obj, name=tenant).first()
            if tenant_obj is None:
                tenant_obj = tenant_create(partner=partner_obj, name=tenant)
                created.append("tenant")
            # A new tenant, or one that has no plan yet, goes on the plan asked for.
            if (
                plan_obj is not None
                and not Subscription.dangerously_unscoped.filter(tenant_id=tenant_obj.pk).exists()
            ):
                subscribe(tenant_obj, plan_obj)
                created.append("subscription")
            user = User.objects.filter(email__iexact=email).first()
            generated_password = None
            if user is None:
                generated_password = None if password else secrets.token_urlsafe(12)
                user = User.objects.create_user(
                    email=email, password=password or generated_password
                )
                created.append("user")
            elif password:
                user.set_password(password)
                user.save(update_fields=["password"])
            with tenant_context(tenant_obj):
                membership = Membership.objects.filter(user=user).first()
                if membership is None:
                    membership = Membership.objects.create(
                        tenant=tenant_obj, user=user, role=Role.OWNER
                    )
                    created.append("membership")
                caller = Caller(user=user, tenant=tenant_obj, role=membership.role)
                project = Project.objects.order_by("created_at", "pk").first()
                if project is None:
                    project = project_create(
                        tenant=tenant_obj, name=FIRST_PROJECT_NAME, actor=caller
                    )
                    created.append("project")
                _key, secret = api_key_create(
                    caller=caller, name="bootstrap", scopes=list(Scope.values), role=membership.role
                )
        output = {
            "partner": {"id": partner_obj.public_id, "name": partner_obj.name},
            "tenant": {"id": tenant_obj.public_id, "name": tenant_obj.name},
            "plan": _plan_of(tenant_obj),
            "project": {"id": project.public_id, "name": project.name},
            "user": {
                "id": user.public_id,
                "email": user.email,
                "role": membership.role,
                "password": generated_password,
            },
            "api_key": secret,
            "created": created,
        }
        self.stdout.write(json.dumps(output, indent=2))


def _plan_of(tenant) -> str | None:
    current = standing(tenant)
    return current.plan.code if current else None
