"""Reading and writing model files the safe way: safetensors weights and JSON configs only."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

WEIGHTS = "model.safetensors"
CONFIG = "config.json"

# The files of a model directory that tasks load (Hugging Face and torchvision layouts): the
# config, safetensors weights (and a sharded model's index), tokenizer and processor files. A
# task may name its own in `Task.model_files`; an imported model keeps only these, at its top.
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
    "*.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
    "image_processor_config.json",
)

# A header larger than this is not a model's (a large model's shard lists a few thousand tensors
# in well under 1 MiB); the header is held in memory to be checked.
MAX_SAFETENSORS_HEADER_BYTES = 8 * 1024 * 1024
# Bits per element of each dtype safetensors defines.
SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E5M2FNUZ": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


class NotSafetensors(ValueError):
    """A weights file that is not a well-formed safetensors file; the message says what is wrong.
    `pickle_like` tells that it starts like a PyTorch checkpoint (a pickle, or torch.save's zip)."""

    def __init__(self, message: str, *, pickle_like: bool = False):
        super().__init__(message)
        self.pickle_like = pickle_like


@dataclass(frozen=True)
class SafetensorsHeader:
    length: int  # bytes of the JSON header (after the 8 bytes that give it)
    tensors: dict  # name: {"dtype", "shape", "data_offsets"}
    data_bytes: int  # bytes of tensor data after the header

    @property
    def file_bytes(self) -> int:
        return 8 + self.length + self.data_bytes

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(info["shape"]) for name, info in self.tensors.items()}


def _read_exactly(handle: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = handle.read(min(left, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def safetensors_header(handle: BinaryIO, *, size: int) -> tuple[SafetensorsHeader, bytes]:
    """Read and check the header at the start of `handle`, a safetensors file of `size` bytes,
    before any loader touches it: the header's length (sane, within the file), its JSON, and every
    tensor's dtype, shape and offsets (contiguous, each the size its shape and dtype take, ending
    exactly at the file's end). Returns the header and the bytes read (8 + its length); raises
    NotSafetensors saying what is wrong."""
    prefix = _read_exactly(handle, 8)
    pickle_like = prefix.startswith((b"\x80", b"PK\x03\x04"))
    if len(prefix) < 8:
        raise NotSafetensors(
            f"it holds {size} byte(s); a safetensors file starts with 8 bytes giving its header's length",
            pickle_like=pickle_like,
        )
    (length,) = struct.unpack("<Q", prefix)
    if length == 0:
        raise NotSafetensors(
            "its first 8 bytes give a header of 0 bytes; a safetensors file starts with a JSON header"
        )
    if length > size - 8:
        raise NotSafetensors(
            f"its first 8 bytes give a header of {length} bytes, more than the file holds ({size} bytes)",
            pickle_like=pickle_like,
        )
    if length > MAX_SAFETENSORS_HEADER_BYTES:
        raise NotSafetensors(
            f"its header takes {length} bytes; at most {MAX_SAFETENSORS_HEADER_BYTES}"
        )
    raw = _read_exactly(handle, length)
    if len(raw) < length:
        raise NotSafetensors(f"the file ends inside its header ({len(raw)} of {length} bytes)")
    try:
        header = json.loads(raw.decode("utf-8")) if raw.startswith(b"{") else None
    except (
        UnicodeDecodeError,
        ValueError,
        RecursionError,
    ):  # (ValueError: bad JSON, or an integer of thousands of digits)
        header = None
    if not isinstance(header, dict):
        raise NotSafetensors("its header is not a JSON object", pickle_like=pickle_like)
    tensors = {name: info for name, info in header.items() if name != "__metadata__"}
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise NotSafetensors("its __metadata__ must map names to strings")
    spans = []
    for name, info in tensors.items():
        spans.append((*_tensor_span(name, info), name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise NotSafetensors(
                f"tensor '{name}' starts at byte {begin} of the data, but the tensors before it end at {end} "
                f"(the tensors overlap or leave a gap)"
            )
        end = stop
    data = size - 8 - length
    if end != data:
        raise NotSafetensors(
            f"its header describes {end} bytes of tensor data, but the file holds {data} after the header"
            + (" (a header claiming more data than was sent)" if end > data else "")
        )
    return SafetensorsHeader(length, tensors, end), prefix + raw


def _tensor_span(name: str, info) -> tuple[int, int]:
    if not isinstance(info, dict):
        raise NotSafetensors(
            f"tensor '{name}' is described by {type(info).__name__}, not an object"
        )
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPE_BITS:
        raise NotSafetensors(
            f"tensor '{name}' has the dtype {dtype!r}, which safetensors does not define"
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise NotSafetensors(
            f"tensor '{name}' has the shape {shape!r}; a shape is a list of sizes (integers from 0)"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise NotSafetensors(
            f"tensor '{name}' has the data_offsets {offsets!r}; they are [begin, end] with 0 <= begin <= end"
        )
    bits = math.prod(shape) * SAFETENSORS_DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        raise NotSafetensors(
            f"tensor '{name}' is {dtype} of shape {shape} ({bits / 8:g} bytes), but its offsets span "
            f"{offsets[1] - offsets[0]} bytes"
        )
    return offsets[0], offsets[1]


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """The tensor names and shapes of a safetensors file, from its checked header (nothing else is
    read), or None when it is not a well-formed safetensors file."""
    try:
        with open(path, "rb") as handle:
            header, _ = safetensors_header(handle, size=Path(path).stat().st_size)
    except (OSError, NotSafetensors):
        return None
    return header.shapes()


def save_weights(state_dict: dict, directory: Path, name: str = WEIGHTS) -> Path:
    """Write a state dict as safetensors (contiguous CPU copies; shared tensors are cloned)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {
        key: value.detach().to("cpu").contiguous().clone() for key, value in state_dict.items()
    }
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
            tensors[f"{prefix}{index}.{name}"] = (
                value if isinstance(value, torch.Tensor) else torch.tensor(value)
            )
    return tensors


def restore_optimizer(optimizer, tensors: dict, prefix: str = "optim.", *, device=None) -> bool:
    """Load into `optimizer` the state `optimizer_tensors` saved among `tensors` (moved to `device`,
    except the step counts); False when there is none."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, name = key[len(prefix) :].split(".", 1)
            state.setdefault(int(index), {})[name] = (
                value.to(device) if device is not None and name != "step" else value
            )
    if not state:
        return False
    optimizer.load_state_dict(
        {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}
    )
    return True
