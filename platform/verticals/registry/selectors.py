"""Reading the registry: rows of the current tenant, by the public ids callers give."""

from __future__ import annotations

from django.db.models import Sum

from verticals.registry.models import BaseModel, Dataset, DatasetVersion, ModelVersion


def dataset_version_by_id(*, project, public_id: str) -> DatasetVersion | None:
    """A dataset version of the project (dsv_…), or the latest version of a dataset (ds_…)."""
    if public_id.startswith("dsv_"):
        return (
            DatasetVersion.objects.select_related("dataset")
            .filter(dataset__project=project, public_id=public_id)
            .first()
        )
    dataset = Dataset.objects.filter(project=project, public_id=public_id).first()
    if dataset is None:
        return None
    return (
        DatasetVersion.objects.select_related("dataset")
        .filter(dataset=dataset)
        .order_by("-version")
        .first()
    )


def model_version_by_id(*, project, public_id: str) -> ModelVersion | None:
    return (
        ModelVersion.objects.select_related("base_model", "parent", "dataset_version__dataset")
        .filter(project=project, public_id=public_id)
        .first()
    )


def base_model_by_id_or_name(value: str) -> BaseModel | None:
    # The model garden is platform-owned and readable by every tenant: no tenant filter applies.
    field = "public_id" if value.startswith("bm_") else "name"
    return BaseModel.objects.filter(**{field: value}).first()


def stored_bytes_by_tenant() -> dict[int, int]:
    """Every tenant's stored bytes (dataset uploads and model versions): the registry's part of
    billing's daily storage snapshot, which runs in platform scope (one pass over every tenant's
    rows, grouped by tenant, is its purpose)."""
    stored: dict[int, int] = {}
    # Every tenant's rows, grouped by tenant: the snapshot is platform-wide work.
    for manager, field in (
        (DatasetVersion.dangerously_unscoped, "source_bytes"),
        (ModelVersion.dangerously_unscoped, "size_bytes"),
    ):
        for tenant_id, size in (
            manager.values("tenant_id").annotate(b=Sum(field)).values_list("tenant_id", "b")
        ):
            stored[tenant_id] = stored.get(tenant_id, 0) + (size or 0)
    return stored
