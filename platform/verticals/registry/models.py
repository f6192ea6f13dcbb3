"""Datasets (immutable versions of validated uploads), model versions and the model garden.

Files live in the `artifacts` storage under a prefix per row (`datasets/<tenant>/<dsv_…>/`,
`models/<tenant>/<mdl_…>/`, `base-models/<bm_…>/`); rows point at them and list what is there.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from verticals.sdk import discovery
from verticals.tenancy.ids import PublicIdField
from verticals.tenancy.scoping import TenantOwnedModel

SPLITS = ("train", "validation", "test")


class Dataset(TenantOwnedModel):
    """A named dataset of a project for one task; its content lives in immutable versions."""

    public_id = PublicIdField(prefix="ds")
    project = models.ForeignKey(
        "tenancy.Project", on_delete=models.CASCADE, related_name="datasets"
    )
    name = models.CharField(max_length=200)
    task = models.CharField(max_length=64)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        "tenancy.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"], name="dataset_name_unique_in_project"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"


class DatasetVersion(TenantOwnedModel):
    """One validated upload: its examples split into train/validation/test. Never changes."""

    public_id = PublicIdField(prefix="dsv")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    source_name = models.CharField(max_length=255, help_text="The uploaded file's name.")
    source_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    storage_prefix = models.CharField(max_length=300)
    labels = models.JSONField(default=list)
    rows = models.PositiveIntegerField(default=0)
    stats = models.JSONField(default=dict, help_text="Rows and label counts per split.")
    split_seed = models.IntegerField(default=0)
    split_fractions = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        "tenancy.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "version"], name="dataset_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.version}"


class ArtifactFields(models.Model):
    """What a stored model carries, for tenant model versions and base models alike."""

    architecture = models.CharField(max_length=100)
    storage_prefix = models.CharField(max_length=300)
    files = models.JSONField(default=list, help_text="[{name, bytes}] of the stored artifact.")
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text=(
            "sha256 of the manifest of every stored file: a line `<sha256 of the file>  <name>` per file, sorted by name."
        ),
    )
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True


class BaseModel(ArtifactFields):
    """A platform-owned pretrained model every tenant may start from (the model garden)."""

    public_id = PublicIdField(prefix="bm")
    name = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    family = models.CharField(
        max_length=100, help_text="Hugging Face model_type or torchvision architecture."
    )
    labels = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=300, blank=True, help_text="Where the weights came from.")
    license = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(ArtifactFields, TenantOwnedModel):
    """A tenant's model: trained, fine-tuned, imported or optimized; its lineage says from what."""

    class Source(models.TextChoices):
        TRAINED = "trained", "Trained"
        IMPORTED = "imported", "Imported"
        OPTIMIZED = "optimized", "Optimized"

    public_id = PublicIdField(prefix="mdl")
    project = models.ForeignKey(
        "tenancy.Project", on_delete=models.CASCADE, related_name="model_versions"
    )
    name = models.CharField(max_length=200)
    version = models.PositiveIntegerField(default=1)
    task = models.CharField(max_length=64)
    labels = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="Held-out (test split) metrics.")
    report = models.JSONField(
        default=dict, blank=True, help_text="Confusion matrix, per-class metrics …"
    )
    params = models.JSONField(default=dict, blank=True, help_text="The training parameters.")
    source = models.CharField(max_length=16, choices=Source.choices)
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    base_model = models.ForeignKey(
        BaseModel, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_by = models.ForeignKey(
        "tenancy.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name", "version"], name="model_version_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version} ({self.public_id})"

    @property
    def predictable(self) -> bool:
        """A labelled task's model with no labels is an encoder without a head: fine-tune it before
        predicting. A generation model has no labels and predicts."""

        task = discovery.get_task(self.task)
        return bool(self.labels) or (task is not None and not task.labelled)
