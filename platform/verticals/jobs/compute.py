"""The worker's compute: where a job's torch work runs and with how many threads."""

from __future__ import annotations

from django.conf import settings


def device() -> str:
    """`cuda` when the worker has a GPU and TRAIN_DEVICE allows it, else `cpu`."""
    import torch

    wanted = getattr(settings, "TRAIN_DEVICE", "auto")
    if wanted == "cpu":
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def configure_torch() -> None:
    import torch

    if settings.TORCH_THREADS > 0 and torch.get_num_threads() != settings.TORCH_THREADS:
        torch.set_num_threads(settings.TORCH_THREADS)
