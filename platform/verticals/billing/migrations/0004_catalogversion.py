"""Each process remembers the tenants' plans until this number moves (catalog.standing)."""

from django.db import migrations, models


def first_version(apps, schema_editor):
    apps.get_model("billing", "CatalogVersion").objects.create(pk=1, version=1)


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_rate_windows_unlogged")]
    operations = [
        migrations.CreateModel(
            name="CatalogVersion",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("version", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(first_version, migrations.RunPython.noop),
    ]
