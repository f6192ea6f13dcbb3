"""Generation usage recorded before the ledger existed (serving's Usage rows) becomes usage events,
and the operator's first plans are created."""

from decimal import Decimal

from django.db import migrations

CORE_METERS = [
    ("inference.requests", "Predictions", "request"),
    ("textgen.tokens", "Generated-text tokens", "token"),
    ("vision.images", "Images", "image"),
    ("training.cpu_seconds", "Job CPU time", "second"),
    ("training.gpu_seconds", "Job GPU time", "second"),
    ("storage.gb_days", "Storage", "GB-day"),
]

# code: (name, fee, cap, rpm, concurrent jobs, model versions, {meter: (included, unit price)})
PLANS = {
    "free": (
        "Free",
        "0",
        "hard",
        60,
        1,
        5,
        {
            "inference.requests": ("1000", "0"),
            "textgen.tokens": ("50000", "0"),
            "vision.images": ("500", "0"),
            "training.cpu_seconds": ("3600", "0"),
            "training.gpu_seconds": ("0", "0"),
            "storage.gb_days": ("30", "0"),
        },
    ),
    "team": (
        "Team",
        "99",
        "soft",
        600,
        4,
        100,
        {
            "inference.requests": ("100000", "0.0008"),
            "textgen.tokens": ("5000000", "0.000002"),
            "vision.images": ("20000", "0.002"),
            "training.cpu_seconds": ("72000", "0.00005"),
            "training.gpu_seconds": ("3600", "0.0008"),
            "storage.gb_days": ("1500", "0.003"),
        },
    ),
    "enterprise": (
        "Enterprise",
        "1500",
        "soft",
        6000,
        16,
        None,
        {
            "inference.requests": ("2000000", "0.0005"),
            "textgen.tokens": ("100000000", "0.0000015"),
            "vision.images": ("500000", "0.0015"),
            "training.cpu_seconds": ("1000000", "0.00004"),
            "training.gpu_seconds": ("100000", "0.0006"),
            "storage.gb_days": ("30000", "0.002"),
        },
    ),
}


def forwards(apps, schema_editor):
    Meter = apps.get_model("billing", "Meter")
    Plan = apps.get_model("billing", "Plan")
    PlanPrice = apps.get_model("billing", "PlanPrice")
    UsageEvent = apps.get_model("billing", "UsageEvent")
    Usage = apps.get_model("serving", "Usage")
    for key, name, unit in CORE_METERS:
        Meter.objects.get_or_create(key=key, defaults={"name": name, "unit": unit})
    for code, (name, fee, cap, rpm, jobs, versions, prices) in PLANS.items():
        plan, created = Plan.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "monthly_fee": Decimal(fee),
                "cap": cap,
                "requests_per_minute": rpm,
                "concurrent_jobs": jobs,
                "max_model_versions": versions,
                "currency": "USD",
            },
        )
        if created:
            for meter, (included, price) in prices.items():
                PlanPrice.objects.create(
                    plan=plan, meter_id=meter, included=Decimal(included), unit_price=Decimal(price)
                )
    batch = []
    for row in Usage.objects.all().iterator():
        batch.append(
            UsageEvent(
                tenant_id=row.tenant_id,
                project_id=row.project_id,
                meter=row.meter,
                quantity=row.quantity,
                task=row.task,
                model_version_id=row.model_version_id,
                model=row.model,
                api_key_id=row.api_key_id,
                user_id=row.user_id,
                source="serving",
                route=row.route,
                idempotency_key=row.public_id,
                occurred_at=row.created_at,
                recorded_at=row.created_at,
                details={
                    "prompt_tokens": row.prompt_tokens,
                    "completion_tokens": row.completion_tokens,
                    "finish_reason": row.finish_reason,
                },
            )
        )
        if len(batch) >= 1000:
            UsageEvent.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    UsageEvent.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial"), ("serving", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
