"""Issue every invoice whose billing period has ended (what the beat schedule runs hourly)."""

from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from verticals.billing.invoicing import close_period
from verticals.billing.money import format_money
from verticals.tenancy.models import Tenant


class Command(BaseCommand):
    help = "Close ended billing periods: retail invoices per tenant, then wholesale invoices per partner."

    def add_arguments(self, parser):
        parser.add_argument(
            "--now",
            help="Close as if it were this ISO time (UTC), e.g. 2026-12-01T00:00:00Z (default: now less "
            "BILLING_CLOSE_GRACE_SECONDS, so that usage on its way is in).",
        )
        parser.add_argument(
            "--tenant",
            action="append",
            default=[],
            help="Only this tenant (public id); repeatable.",
        )

    def handle(self, *args, now=None, tenant=(), **options):
        at = None
        if now:
            at = parse_datetime(now)
            if at is None or at.tzinfo is None:
                raise CommandError(
                    f"--now {now!r}: give an ISO time with a zone, e.g. 2026-12-01T00:00:00Z."
                )
        tenants = None
        if tenant:
            tenants = list(Tenant.objects.filter(public_id__in=tenant))
            missing = set(tenant) - {t.public_id for t in tenants}
            if missing:
                raise CommandError(f"No tenant with id {', '.join(sorted(missing))}.")
        issued = close_period(at, tenants=tenants)
        for invoice in issued:
            whom = invoice.tenant.name if invoice.tenant_id else invoice.partner.name
            self.stdout.write(
                f"{invoice.number}  {invoice.kind:<9}  {whom}  {format_money(invoice.total_minor, invoice.currency)}"
            )
        self.stdout.write(f"{len(issued)} invoice(s) issued.")
