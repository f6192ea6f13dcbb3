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


def optimizer_tensors(optimizer, prefix: str = "optim.") -> dict:
    """An optimizer's state as named tensors (`optim.<param index>.<name>`), for a checkpoint."""
    import torch

    tensors = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():  # AdamW: step, exp_avg, exp_avg_sq
            tensors[f"{prefix}{index}.{name}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return tensors


def restore_optimizer(optimizer, tensors: dict, prefix: str = "optim.", *, device=None) -> bool:
    """Load into `optimizer` the state `optimizer_tensors` saved among `tensors` (moved to `device`,
    except the step counts); False when there is none."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, name = key[len(prefix):].split(".", 1)
            state.setdefault(int(index), {})[name] = value.to(device) if device is not None and name != "step" else value
    if not state:
        return False
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    return True
