"""Row-level security on the tenant-owned tables (PostgreSQL; nothing elsewhere): see verticals.tenancy.rls."""

from django.db import migrations

from verticals.tenancy.rls import EnableRowLevelSecurity


class Migration(migrations.Migration):
    dependencies = [("registry", "0002_artifact_digest_covers_every_file")]

    operations = [
        EnableRowLevelSecurity("Dataset"),
        EnableRowLevelSecurity("DatasetVersion"),
        EnableRowLevelSecurity("ModelVersion"),
    ]
