"""Row-level security on the tenant-owned tables (PostgreSQL; nothing elsewhere): see verticals.tenancy.rls."""

from django.db import migrations

from verticals.tenancy.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("tenancy", "0002_auth_failure_windows")]

    operations = [
        EnableRowLevelSecurity("Membership"),
        EnableRowLevelSecurity("Invitation"),
        EnableRowLevelSecurity("Project"),
        EnableRowLevelSecurity("ApiKey"),
        EnableRowLevelSecurity("AuditEvent"),
    ]
