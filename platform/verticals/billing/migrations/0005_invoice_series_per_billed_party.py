"""Invoice numbers: one series per issuer, billed party and year (was: per issuer and year, which let a
partner count the operator's invoices to other partners). Series already used keep their rows; new
numbers name the billed party, so they cannot collide with the earlier ones."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0004_catalogversion"),
        ("tenancy", "0001_initial"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="invoicesequence",
            name="one_sequence_per_issuer_year",
        ),
        migrations.AddField(
            model_name="invoicesequence",
            name="billed",
            field=models.CharField(
                default="",
                help_text="The public id of the billed tenant or partner.",
                max_length=32,
            ),
        ),
        migrations.AlterField(
            model_name="invoice",
            name="number",
            field=models.CharField(
                help_text="In the series of its issuer, billed party and year.",
                max_length=64,
                unique=True,
            ),
        ),
        migrations.AddConstraint(
            model_name="invoicesequence",
            constraint=models.UniqueConstraint(
                fields=("issuer", "billed", "year"), name="one_sequence_per_series_year"
            ),
        ),
    ]
