# The usage rows moved to the billing ledger (billing 0002) first.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("serving", "0001_initial"),
        ("billing", "0002_usage_from_serving"),
    ]

    operations = [
        migrations.DeleteModel(
            name="Usage",
        ),
    ]
