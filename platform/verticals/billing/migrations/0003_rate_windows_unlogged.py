"""Rate windows live a minute: on PostgreSQL their table skips the write-ahead log (UNLOGGED), so a
metered call's rate check never waits on a disk flush. After a crash the table comes back empty,
which only forgets the current minute's counts."""

from django.db import migrations


def unlogged(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE billing_ratewindow SET UNLOGGED")


def logged(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE billing_ratewindow SET LOGGED")


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_usage_from_serving")]
    operations = [migrations.RunPython(unlogged, logged)]
