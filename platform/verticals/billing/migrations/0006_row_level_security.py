"""Row-level security on the tenant-owned tables (PostgreSQL; nothing elsewhere): see verticals.tenancy.rls."""

from django.db import migrations

from verticals.tenancy.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_invoice_series_per_billed_party")]

    operations = [
        EnableRowLevelSecurity("Subscription"),
        EnableRowLevelSecurity("Contract"),
        EnableRowLevelSecurity("UsageEvent"),
        EnableRowLevelSecurity("UsageCounter"),
        EnableRowLevelSecurity("RateWindow"),
        EnableRowLevelSecurity("Invoice", partner="partner"),
        EnableRowLevelSecurity("InvoiceLine", through="invoice"),
        EnableRowLevelSecurity("ContractPrice", through="contract"),
    ]
