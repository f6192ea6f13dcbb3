"""The torch side of the text-generation task: tokenizers, causal LMs, LoRA, training, artifacts.

Imported lazily (by `nlp.textgen` inside its methods), so that Django can import the plugin at
start-up without loading torch or transformers.

Models are Hugging Face causal LMs (`LlamaForCausalLM` and its relatives) with a fast tokenizer
that carries a chat template: what `save` writes is a plain Hugging Face directory (config.json,
model.safetensors, tokenizer files, generation_config.json) that loads anywhere, plus a few
`verticals_*` keys in config.json.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from verticals.sdk import (
    TrainingError,
    TrainingLoop,
    auto_epochs,
    parameter_groups,
    read_config,
    usable_checkpoint,
    warmup_then_decay,
    write_config,
)

TASK = "text-generation"
SMALL = "causal-lm-small"
FINETUNE = "causal-lm-finetune"
# Hugging Face `model_type`s causal-lm-finetune starts from: decoder-only transformers with the
# Llama layout (q/k/v/o projections, a gated MLP), which LoRA wraps by name.
FAMILIES = ("llama", "mistral", "qwen2")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FORMAT_VERSION = 1
MAX_CONTEXT = 8192  # the longest context served, whatever a model's config claims
MAX_GRAD_NORM = 1.0

# epochs=null: enough epochs for about `steps` optimizer steps, within [low, high].
AUTO_EPOCHS = {
    SMALL: {"steps": 300, "low": 5, "high": 100},
    FINETUNE: {"steps": 30, "low": 1, "high": 5},
}
DEFAULT_LEARNING_RATE = {SMALL: 3e-3, "full": 5e-5, "lora": 5e-4}

# --- the byte-level tokenizer of causal-lm-small -----------------------------------------------------

ENDOFTEXT, IM_START, IM_END, PAD = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, PAD]
# ChatML, as SmolLM2 writes it (without its default system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _byte_symbols() -> list[str]:
    """The printable character GPT-2's byte-level scheme gives each byte 0..255, by byte."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def byte_tokenizer():
    """A fixed byte-level tokenizer: the special tokens, then one token per byte (260 in all).

    Nothing is learned, so the vocabulary is the same on every machine and every run (the
    `tokenizers` trainers are not deterministic); any text encodes, in any language.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for symbol in _byte_symbols():
        vocab[symbol] = len(vocab)
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=ENDOFTEXT,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# --- encoding --------------------------------------------------------------------------------------


class NoChatTemplate(ValueError):
    """The tokenizer has no chat template, so a conversation cannot be written as a prompt."""


def prompt_ids(tokenizer, decoded: dict) -> list[int]:
    """The token ids of a prompt: a conversation through the chat template (ending with the
    assistant's turn opening), or a plain prompt string as the tokenizer encodes text."""
    if "messages" in decoded:
        if not getattr(tokenizer, "chat_template", None):
            raise NoChatTemplate(
                "This model has no chat template; send the prompt as a string instead of messages."
            )
        ids = tokenizer.apply_chat_template(
            list(decoded["messages"]), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return [int(i) for i in ids]
    return [int(i) for i in tokenizer(decoded["prompt"], add_special_tokens=True)["input_ids"]]


def end_token_id(tokenizer, eos_token_ids: Sequence[int]) -> int:
    """The token that ends an answer (the end of the assistant's turn in a chat template)."""
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    return int(eos_token_ids[0])


def encode_example(
    tokenizer, example: dict, end_id: int, max_length: int
) -> tuple[list[int], list[int], bool]:
    """(prompt ids, completion ids ending with `end_id`, truncated?) of one dataset example, at most
    `max_length` tokens together: a long completion keeps its start, a long prompt its end."""
    prompt = prompt_ids(tokenizer, example)
    completion = [
        int(i) for i in tokenizer(example["completion"], add_special_tokens=False)["input_ids"]
    ] + [end_id]
    truncated = len(prompt) + len(completion) > max_length
    if truncated:
        completion = completion[: max(1, max_length - min(len(prompt), max_length // 2))]
        room = max_length - len(completion)
        prompt = prompt[-room:] if room > 0 else []
    return prompt, completion, truncated


# --- the model object the task hands around -------------------------------------------------------


@dataclass
class CausalLM:
    """A trained (or loaded) causal language model: the Hugging Face module and its tokenizer."""

    architecture: str
    model: nn.Module
    tokenizer: Any
    context_length: int
    eos_token_ids: list[int]
    device: str = "cpu"
    facts: dict = field(default_factory=dict)  # what training found (initial_validation_loss …)
    _engine: Any = field(default=None, repr=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    @property
    def end_id(self) -> int:
        return end_token_id(self.tokenizer, self.eos_token_ids)

    @property
    def pad_id(self) -> int:
        return int(
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.end_id
        )

    def engine(self, *, max_batch: int):
        """This model's one generation engine (continuous batching), made at the first call."""
        with self._lock:
            if self._engine is None:
                # (torch loads with a model, not with the plugin)
                from verticals.sdk.generation import ContinuousBatcher

                self._engine = ContinuousBatcher(
                    self.model,
                    self.tokenizer,
                    eos_token_ids=list(self.eos_token_ids),
                    max_batch=max_batch,
                    max_batch_tokens=max(8192, self.context_length),
                    name=f"generation-{self.architecture}",
                )
            return self._engine

    def close(self) -> None:
        """Stop the generation engine (the model leaves the serving cache)."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()


def eos_ids(model: nn.Module, tokenizer) -> list[int]:
    found: list[int] = []
    for value in (
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
        getattr(model.config, "eos_token_id", None),
        tokenizer.eos_token_id,
    ):
        for token in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(token, int) and token not in found:
                found.append(token)
    return found


# --- LoRA --------------------------------------------------------------------------------------------


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable low-rank update: W x + (alpha / r) · B A dropout(x).

    B starts at zero, so the wrapped model starts exactly as the base. `merged()` folds the update
    into the base weight and gives back a plain `nn.Linear`.
    """

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        self.lora_a = nn.Parameter(
            torch.empty(rank, base.in_features, dtype=base.weight.dtype, device=base.weight.device)
        )
        self.lora_b = nn.Parameter(
            torch.zeros(base.out_features, rank, dtype=base.weight.dtype, device=base.weight.device)
        )
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_a.t() @ self.lora_b.t()) * self.scaling

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        self.base.weight += (self.lora_b @ self.lora_a) * self.scaling
        for parameter in self.base.parameters():
            parameter.requires_grad_(True)
        return self.base


def add_lora(model: nn.Module, *, rank: int, alpha: float, dropout: float) -> int:
    """Freeze the model and wrap its attention and MLP projections in LoRA; the number wrapped."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    wrapped = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if child_name in LORA_TARGETS and isinstance(child, nn.Linear):
                setattr(
                    module, child_name, LoRALinear(child, rank=rank, alpha=alpha, dropout=dropout)
                )
                wrapped += 1
    return wrapped


def merge_lora(model: nn.Module) -> None:
    """Fold every LoRA update into its base weight: the model is a plain Hugging Face model again."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged())
    for parameter in model.parameters():
        parameter.requires_grad_(True)


# --- building --------------------------------------------------------------------------------------


def small_config(params: dict, tokenizer) -> dict:
    d_model, heads = int(params["d_model"]), int(params["num_heads"])
    if d_model % heads or (d_model // heads) % 2:
        raise TrainingError(
            f"d_model ({d_model}) must be a multiple of num_heads ({heads}) with an even head size; "
            f"choose other values."
        )
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": d_model,
        "intermediate_size": 4 * d_model,
        "num_hidden_layers": int(params["num_layers"]),
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "max_position_embeddings": int(params["context_length"]),
        "attention_dropout": float(params["dropout"]),
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def build_small(config: dict, seed: int) -> CausalLM:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = byte_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(**config))
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return CausalLM(
        SMALL,
        model,
        tokenizer,
        int(config["max_position_embeddings"]),
        [int(tokenizer.eos_token_id)],
    )


def _build(ctx, params: dict, architecture: str, checkpoint) -> CausalLM:
    """The model training starts from: new (causal-lm-small), or the base model / parent version."""
    if architecture == SMALL and ctx.base is None:
        tokenizer = byte_tokenizer()
        config = (
            dict(checkpoint.state["model_config"])
            if checkpoint is not None
            else small_config(params, tokenizer)
        )
        return build_small(config, ctx.seed)
    if ctx.base is None:
        raise TrainingError(
            f"{FINETUNE} fine-tunes a pretrained causal language model: choose a base model (or a parent "
            f"version) for this job, or train {SMALL!r} from scratch."
        )
    found = recognize(Path(ctx.base))
    if found is None:
        raise TrainingError(
            f"The base model is not a causal language model this task can fine-tune (model_type "
            f"{', '.join(FAMILIES)}, safetensors weights, a tokenizer.json)."
        )
    if architecture == SMALL and found[0] != SMALL:
        raise TrainingError(f"The parent is not a {SMALL} model; {SMALL} continues only those.")
    try:
        model = load(Path(ctx.base), device="cpu")
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"The base model could not be loaded: {exc}") from exc
    model.architecture = architecture
    return model


# --- batches and losses ----------------------------------------------------------------------------


def encode_split(
    model: CausalLM, examples: Sequence, max_length: int
) -> tuple[list[tuple[list[int], list[int]]], int]:
    """(prompt, completion) token ids per example, and how many were truncated."""
    pairs, truncated = [], 0
    for example in examples:
        prompt, completion, cut = encode_example(
            model.tokenizer, example.input, model.end_id, max_length
        )
        pairs.append((prompt, completion))
        truncated += int(cut)
    return pairs, truncated


def collate(
    pairs: Sequence[tuple[list[int], list[int]]], pad_id: int, device: str
) -> dict[str, torch.Tensor]:
    """Right-padded ids, the attention mask, and labels: the completion's ids, -100 elsewhere."""
    longest = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((len(pairs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), longest), dtype=torch.long)
    labels = torch.full((len(pairs), longest), -100, dtype=torch.long)
    for row, (prompt, completion) in enumerate(pairs):
        sequence = prompt + completion
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
        labels[row, len(prompt) : len(sequence)] = torch.tensor(completion)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


def completion_loss(
    module: nn.Module, batch: dict[str, torch.Tensor], *, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of the completion tokens only. The vocabulary projection runs on the
    positions that predict a completion token, not on the whole batch (a 49k vocabulary × every
    prompt position would dominate memory)."""
    decoder = getattr(module, module.base_model_prefix)
    hidden = decoder(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    ).last_hidden_state
    targets = batch["labels"][:, 1:]
    chosen = targets != -100
    logits = module.get_output_embeddings()(hidden[:, :-1][chosen])
    return nn.functional.cross_entropy(logits.float(), targets[chosen], reduction=reduction)


def split_loss(
    model: CausalLM, pairs: Sequence[tuple[list[int], list[int]]], *, batch_size: int
) -> float | None:
    """Mean cross-entropy per completion token over a split (None when the split is empty)."""
    if not pairs:
        return None
    module = model.model
    was_training = module.training
    module.eval()
    total, count = 0.0, 0
    try:
        with torch.inference_mode():
            for start in range(0, len(pairs), batch_size):
                chunk = pairs[start : start + batch_size]
                total += float(
                    completion_loss(
                        module, collate(chunk, model.pad_id, model.device), reduction="sum"
                    )
                )
                count += sum(len(c) for _, c in chunk)
    finally:
        module.train(was_training)
    return total / max(count, 1)


def perplexity(loss: float) -> float:
    return float(math.exp(min(loss, 50.0)))


def evaluate(
    model: CausalLM, examples: Sequence, *, max_length: int | None = None, batch_size: int = 8
) -> dict:
    pairs, _ = encode_split(model, examples, max_length or model.context_length)
    loss = split_loss(model, pairs, batch_size=batch_size)
    metrics = {"validation_loss": loss, "perplexity": perplexity(loss)} if loss is not None else {}
    metrics.update({k: v for k, v in model.facts.items() if isinstance(v, (int, float))})
    return metrics


# --- training --------------------------------------------------------------------------------------


def train(ctx) -> CausalLM:
    params = ctx.params
    architecture = ctx.architecture or SMALL
    if architecture not in (SMALL, FINETUNE):
        raise TrainingError(
            f"Unknown architecture {architecture!r}; text-generation has {SMALL!r} and {FINETUNE!r}."
        )
    method = str(params.get("method") or "lora") if architecture == FINETUNE else "full"
    if not len(ctx.train):
        raise TrainingError(
            "The training split holds no examples; upload a dataset with more rows."
        )

    torch.manual_seed(ctx.seed)
    checkpoint = _usable_checkpoint(ctx, architecture, method)
    model = _build(ctx, params, architecture, checkpoint)
    max_length = min(int(params["max_length"]), model.context_length)
    module = model.model.to(ctx.device)
    model.device = ctx.device
    if method == "lora":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            wrapped = add_lora(
                module,
                rank=int(params["lora_rank"]),
                alpha=float(params["lora_alpha"]),
                dropout=float(params["lora_dropout"]),
            )
        if not wrapped:
            raise TrainingError(
                f"The model has none of the layers LoRA adapts ({', '.join(LORA_TARGETS)}); "
                f"train with method 'full'."
            )
        module.to(ctx.device)
    trainable = [(name, p) for name, p in module.named_parameters() if p.requires_grad]

    train_pairs, cut = encode_split(model, ctx.train.examples, max_length)
    validation_pairs, _ = encode_split(model, ctx.validation.examples, max_length)
    if cut:
        ctx.log(
            f"{cut} training example(s) are longer than max_length ({max_length} tokens) and were truncated.",
            "warning",
        )

    batch_size = int(params["batch_size"])
    steps_per_epoch = math.ceil(len(train_pairs) / batch_size)
    epochs = int(params.get("epochs") or auto_epochs(steps_per_epoch, **AUTO_EPOCHS[architecture]))
    learning_rate = float(
        params.get("learning_rate")
        or DEFAULT_LEARNING_RATE[SMALL if architecture == SMALL else method]
    )
    weight_decay = float(params["weight_decay"])
    total_steps = epochs * steps_per_epoch
    warmup_steps = int(total_steps * float(params["warmup_ratio"]))
    size = sum(p.numel() for _, p in trainable)
    ctx.log(
        f"Training {architecture}"
        + (f" ({method})" if architecture == FINETUNE else "")
        + f": {size:,} trainable parameters, {epochs} epochs of {steps_per_epoch} steps (batch {batch_size}), "
        f"peak learning rate {learning_rate:g}."
    )

    optimizer = torch.optim.AdamW(parameter_groups(trainable, weight_decay), lr=learning_rate)
    loop = TrainingLoop(
        ctx,
        optimizer,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        learning_rate=learning_rate,
        schedule=warmup_then_decay(learning_rate, warmup_steps, total_steps),
        max_grad_norm=MAX_GRAD_NORM,
        clip=[p for _, p in trainable],
    )

    def load_trainable(state: dict) -> None:
        named = dict(trainable)
        if set(state) != set(named):
            raise TrainingError(
                "The checkpoint does not fit the model being trained; start a new job."
            )
        with torch.no_grad():
            for name, value in state.items():
                named[name].copy_(value)

    if checkpoint is not None:
        loop.resume(checkpoint, load_trainable)
        model.facts.update(checkpoint.state.get("facts") or {})
    elif validation_pairs:
        initial = split_loss(model, validation_pairs, batch_size=max(batch_size, 8))
        model.facts["initial_validation_loss"] = initial
        ctx.log(
            f"Validation loss before training: {initial:.4f} (perplexity {perplexity(initial):.2f})."
        )
        ctx.report(
            0,
            total_steps,
            {"val_loss": initial, "val_perplexity": perplexity(initial)},
            description="starting",
        )

    for epoch in loop.epochs():
        module.train()
        for indices in epoch.batches(len(train_pairs), batch_size):
            chosen = [train_pairs[i] for i in indices.tolist()]
            batch = collate(chosen, model.pad_id, ctx.device)
            loop.step(
                completion_loss(module, batch),
                samples=len(chosen),
                weight=sum(len(c) for _, c in chosen),
            )
        metrics = {"epoch_train_loss": epoch.mean_loss}
        if validation_pairs:
            val = split_loss(model, validation_pairs, batch_size=max(batch_size, 8))
            metrics.update({"val_loss": val, "val_perplexity": perplexity(val)})
        state = {"architecture": architecture, "method": method, "facts": dict(model.facts)}
        if architecture == SMALL and ctx.base is None:
            state["model_config"] = _small_config_of(module)
        loop.end_epoch(metrics, weights={name: p.detach() for name, p in trainable}, state=state)
    if method == "lora":
        merge_lora(module)
    module.eval()
    return model


def _small_config_of(module) -> dict:
    config = module.config
    return {
        key: getattr(config, key)
        for key in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "max_position_embeddings",
            "attention_dropout",
            "rms_norm_eps",
            "tie_word_embeddings",
            "bos_token_id",
            "eos_token_id",
            "pad_token_id",
        )
    }


def _usable_checkpoint(ctx, architecture: str, method: str):
    return usable_checkpoint(
        ctx,
        {"architecture": architecture, "method": method},
        warning="The saved checkpoint belongs to another architecture or method; training starts over.",
    )


# --- artifacts -------------------------------------------------------------------------------------


def save(model: CausalLM, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # transformers 5 writes safetensors (and generation_config.json)
    model.model.save_pretrained(str(directory))
    # tokenizer.json, tokenizer_config.json, the chat template
    model.tokenizer.save_pretrained(str(directory))
    if not (directory / "model.safetensors").is_file():
        raise RuntimeError("save_pretrained did not write model.safetensors")
    config = read_config(directory)
    config.pop("quantization_config", None)
    config.update(
        {
            "verticals_task": TASK,
            "verticals_architecture": model.architecture,
            "verticals_context_length": int(model.context_length),
            "verticals_format": FORMAT_VERSION,
        }
    )
    if model.facts:
        config["verticals_training"] = dict(model.facts)
    write_config(directory, config)


def load(directory: Path, *, device: str = "cpu") -> CausalLM:
    directory = Path(directory)
    recognized = recognize(directory)
    if recognized is None:
        raise ValueError(f"{directory} holds no causal language model this task can load.")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = read_config(directory)
    module = AutoModelForCausalLM.from_pretrained(
        str(directory),
        dtype=torch.float32,
        use_safetensors=True,
        trust_remote_code=False,
        local_files_only=True,
    )
    tokenizer = AutoTokenizer.from_pretrained(
        str(directory), trust_remote_code=False, local_files_only=True
    )
    context = (
        config.get("verticals_context_length")
        or getattr(module.config, "max_position_embeddings", None)
        or 2048
    )
    model = CausalLM(
        recognized[0],
        module,
        tokenizer,
        min(int(context), MAX_CONTEXT),
        eos_ids(module, tokenizer),
        facts={},
    )
    module.to(device).eval()
    model.device = device
    return model


def _has_safetensors(directory: Path) -> bool:
    return (directory / "model.safetensors").is_file() or (
        directory / "model.safetensors.index.json"
    ).is_file()


def recognize(directory: Path) -> tuple[str, list[str]] | None:
    """Reads config.json only (never code): a Hugging Face causal LM of a family we fine-tune, with
    safetensors weights and a fast tokenizer (tokenizer.json). No labels: ([], it predicts text)."""
    directory = Path(directory)
    config = read_config(directory)
    if not config:
        return None
    architectures = config.get("architectures") or []
    if not any(isinstance(a, str) and a.endswith("ForCausalLM") for a in architectures):
        return None
    if config.get("model_type") not in FAMILIES or not _has_safetensors(directory):
        return None
    if not (directory / "tokenizer.json").is_file():
        return None
    own = config.get("verticals_architecture") if config.get("verticals_task") == TASK else None
    return (own if own in (SMALL, FINETUNE) else FINETUNE), []
