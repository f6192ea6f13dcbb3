"""Reading and writing model files the safe way: safetensors weights and JSON configs only."""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def save_weights(state_dict: dict, directory: Path, name: str = WEIGHTS) -> Path:
    """Write a state dict as safetensors (contiguous CPU copies; shared tensors are cloned)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().to("cpu").contiguous().clone() for key, value in state_dict.items()}
    path = directory / name
    save_file(tensors, str(path))
    return path


def load_weights(directory: Path, name: str = WEIGHTS, *, device: str = "cpu") -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / name), device=device)


def write_config(directory: Path, config: dict, name: str = CONFIG) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(config, indent=2, sort_keys=True))
    return path


def read_config(directory: Path, name: str = CONFIG) -> dict:
    path = directory / name
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
