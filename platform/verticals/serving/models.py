"""What predictions used, call by call: the rows billing meters (e.g. `textgen.tokens`)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from verticals.tenancy.ids import PublicIdField
from verticals.tenancy.scoping import TenantOwnedModel


class Usage(TenantOwnedModel):
    """One metered call. `quantity` of `meter` is what billing charges; the token counts say
    how it was made up. Rows stay when the model is deleted (`model` keeps the id called)."""

    public_id = PublicIdField(prefix="use")
    project = models.ForeignKey("tenancy.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model_version = models.ForeignKey("registry.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    base_model = models.ForeignKey("registry.BaseModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    model = models.CharField(max_length=100, help_text="The model id the call named.")
    task = models.CharField(max_length=64)
    route = models.CharField(max_length=40, help_text="predict, predict.stream, openai.chat, openai.completions …")
    meter = models.CharField(max_length=64)
    quantity = models.BigIntegerField(default=0)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    finish_reason = models.CharField(max_length=20, blank=True)
    api_key = models.ForeignKey("tenancy.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    user = models.ForeignKey("tenancy.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "meter", "created_at"], name="usage_tenant_meter_time")]

    def __str__(self) -> str:
        return f"{self.quantity} {self.meter} ({self.public_id})"
