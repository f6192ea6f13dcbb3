"""The torch side of the sentiment task: models, tokenizers, the training loop, artifacts.

Imported lazily (by `nlp.sentiment` inside its methods), so that Django can import the plugin
at start-up without loading torch or transformers.
"""

from __future__ import annotations

import math
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
    load_weights,
    parameter_groups,
    read_config,
    save_weights,
    upload_limits,
    usable_checkpoint,
    warmup_then_decay,
    write_config,
)

SMALL = "transformer-small"
BERT = "bert-finetune"
# Hugging Face `model_type`s bert-finetune starts from (AutoModelForSequenceClassification).
BERT_FAMILIES = ("bert",)
TASK = "sentiment"
FORMAT_VERSION = 1

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP]

# epochs=null: enough epochs for about `steps` optimizer steps, within [low, high] — many passes
# over a tiny dataset, few over a large one.
AUTO_EPOCHS = {
    SMALL: {"steps": 300, "low": 5, "high": 40},
    BERT: {"steps": 100, "low": 3, "high": 20},
}
DEFAULT_LEARNING_RATE = {SMALL: 1e-3, BERT: 5e-5}
MAX_GRAD_NORM = 1.0


# --- the from-scratch encoder ---------------------------------------------------------------


class TinyEncoder(nn.Module):
    """A small pre-norm transformer encoder: token + learned position embeddings, mean pooling
    over the non-pad tokens, a linear head."""

    def __init__(
        self,
        *,
        vocab_size: int,
        num_labels: int,
        d_model: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        ff_dim: int | None = None,
        max_length: int = 128,
        dropout: float = 0.1,
        pad_id: int = 0,
    ):
        super().__init__()
        self.pad_id = pad_id
        self.tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.positions = nn.Embedding(max_length, d_model)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model,
            num_heads,
            dim_feedforward=ff_dim or 4 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.dropout(self.tokens(input_ids) + self.positions(positions).unsqueeze(0))
        x = self.encoder(x, src_key_padding_mask=attention_mask == 0)
        x = self.norm(x)
        mask = attention_mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(self.dropout(pooled))


def small_config(params: dict, vocab_size: int, num_labels: int) -> dict:
    return {
        "vocab_size": vocab_size,
        "num_labels": num_labels,
        "d_model": int(params["d_model"]),
        "num_layers": int(params["num_layers"]),
        "num_heads": int(params["num_heads"]),
        "ff_dim": 4 * int(params["d_model"]),
        "max_length": int(params["max_length"]),
        "dropout": float(params["dropout"]),
        "pad_id": 0,
    }


def train_tokenizer(texts: Sequence[str], vocab_size: int, *, limit_alphabet: int = 1000):
    """A lowercasing WordPiece tokenizer whose vocabulary is learned from `texts`.

    The vocabulary is chosen here, not by the `tokenizers` trainers: those break ties in hash
    order, so two runs on the same texts give different vocabularies (and a rerun of a job a
    different model). Ours is a pure function of the texts: the special tokens, the alphabet
    (each character as a word start and as a continuation), then whole words and the prefixes
    and `##`-suffixes that several words share, most frequent first, ties by the token itself.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, lowercase=True
    )
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter = Counter()
    for text in texts:
        words.update(
            word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
        )
    characters: Counter = Counter()
    for word, count in words.items():
        characters.update({c: count for c in set(word)})
    alphabet = [c for c, _ in sorted(characters.items(), key=lambda item: (-item[1], item[0]))][
        :limit_alphabet
    ]
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *alphabet, *(f"##{c}" for c in alphabet)]:
        vocab.setdefault(token, len(vocab))
    budget = vocab_size - len(vocab)
    if budget > 0:
        scores: Counter = Counter({word: count for word, count in words.items() if len(word) > 1})
        shared: Counter = Counter()
        piece_scores: Counter = Counter()
        for word, count in words.items():
            pieces = {word[:i] for i in range(2, len(word))} | {
                f"##{word[i:]}" for i in range(1, len(word) - 1)
            }
            for piece in pieces:
                shared[piece] += 1
                piece_scores[piece] += count
        for piece, count in piece_scores.items():
            if shared[piece] >= 2 and piece not in scores:
                scores[piece] = count
        ranked = sorted(scores.items(), key=lambda item: (-item[1], -len(item[0]), item[0]))
        for token, _ in ranked[:budget]:
            vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(
        models.WordPiece(vocab=vocab, unk_token=UNK, max_input_chars_per_word=100)
    )
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    _add_template(tokenizer)
    return tokenizer


def _add_template(tokenizer) -> None:
    """[CLS] … [SEP] around each text: every input has at least one token to pool over."""
    from tokenizers import processors

    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        special_tokens=[(CLS, tokenizer.token_to_id(CLS)), (SEP, tokenizer.token_to_id(SEP))],
    )


def _fit_tokenizer(tokenizer, max_length: int):
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(
        pad_id=tokenizer.token_to_id(PAD), pad_token=PAD
    )  # to the batch's longest
    return tokenizer


# --- the model object the task hands around ----------------------------------------------------


@dataclass
class SentimentModel:
    """A trained (or loaded) sentiment classifier: the torch module, its tokenizer and labels."""

    architecture: str
    module: nn.Module
    tokenizer: Any  # tokenizers.Tokenizer (transformer-small) or a transformers tokenizer (bert)
    labels: list[str]
    max_length: int
    config: dict = field(default_factory=dict)  # transformer-small: TinyEncoder's arguments
    device: str = "cpu"

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        texts = list(texts)
        if self.architecture == SMALL:
            encodings = self.tokenizer.encode_batch(texts)
            batch = {
                "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
                "attention_mask": torch.tensor(
                    [e.attention_mask for e in encodings], dtype=torch.long
                ),
            }
        else:
            batch = dict(
                self.tokenizer(
                    texts,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
            )
        return {key: value.to(self.device) for key, value in batch.items()}

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.architecture == SMALL:
            return self.module(batch["input_ids"], batch["attention_mask"])
        return self.module(**batch).logits

    def probabilities(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Softmax scores (CPU float32), one row per text, columns in `labels` order."""
        texts = list(texts)
        if not texts:
            return torch.zeros((0, len(self.labels)))
        was_training = self.module.training
        self.module.eval()
        rows = []
        try:
            with torch.inference_mode():
                for start in range(0, len(texts), batch_size):
                    logits = self.logits(self.encode(texts[start : start + batch_size]))
                    rows.append(torch.softmax(logits.float(), dim=-1).cpu())
        finally:
            self.module.train(was_training)
        return torch.cat(rows)


# --- training ------------------------------------------------------------------------------------


def train(ctx) -> SentimentModel:
    params = ctx.params
    labels = list(ctx.labels)
    if len(labels) < 2:
        raise TrainingError(
            f"Sentiment training needs at least 2 labels; the dataset has {len(labels)}."
        )
    index = {label: i for i, label in enumerate(labels)}
    train_pairs = [(e.input, index[e.label]) for e in ctx.train if e.label in index]
    if not train_pairs:
        raise TrainingError(
            "The training split holds no labelled rows; upload a dataset with more rows."
        )
    architecture = ctx.architecture or SMALL
    if architecture not in (SMALL, BERT):
        raise TrainingError(
            f"Unknown architecture {architecture!r}; sentiment has {SMALL!r} and {BERT!r}."
        )
    batch_size = int(params["batch_size"])
    steps_per_epoch = math.ceil(len(train_pairs) / batch_size)
    epochs = int(params.get("epochs") or default_epochs(architecture, steps_per_epoch))
    learning_rate = float(params.get("learning_rate") or DEFAULT_LEARNING_RATE[architecture])
    weight_decay = float(params["weight_decay"])
    ctx.log(
        f"Training {architecture}: {epochs} epochs of {steps_per_epoch} steps (batch {batch_size}), "
        f"peak learning rate {learning_rate:g}."
    )
    warmup_ratio = float(params["warmup_ratio"])

    torch.manual_seed(ctx.seed)
    checkpoint = _usable_checkpoint(ctx, architecture, labels)
    if architecture == SMALL:
        model = _build_small(ctx, params, labels, [text for text, _ in train_pairs], checkpoint)
    else:
        model = _build_bert(ctx, params, labels)
    module = model.module.to(ctx.device)
    model.device = ctx.device

    optimizer = torch.optim.AdamW(parameter_groups(module, weight_decay), lr=learning_rate)
    total_steps = epochs * steps_per_epoch
    loop = TrainingLoop(
        ctx,
        optimizer,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        learning_rate=learning_rate,
        schedule=warmup_then_decay(learning_rate, int(total_steps * warmup_ratio), total_steps),
        max_grad_norm=MAX_GRAD_NORM,
        clip=module.parameters(),
    )
    loop.resume(checkpoint, module.load_state_dict)

    loss_fn = nn.CrossEntropyLoss()
    for epoch in loop.epochs():
        module.train()
        for indices in epoch.batches(len(train_pairs), batch_size):
            chosen = [train_pairs[i] for i in indices.tolist()]
            batch = model.encode([text for text, _ in chosen])
            targets = torch.tensor(
                [label for _, label in chosen], dtype=torch.long, device=ctx.device
            )
            loop.step(loss_fn(model.logits(batch).float(), targets), samples=len(chosen))
        metrics = {"epoch_train_loss": epoch.mean_loss}
        metrics.update(validation_metrics(model, ctx.validation, batch_size=max(batch_size, 32)))
        loop.end_epoch(
            metrics,
            weights=model.module.state_dict(),
            tensors=_tokenizer_tensors(model),
            state={
                "architecture": architecture,
                "labels": labels,
                "model_config": model.config,
            },
        )
    module.eval()
    return model


def default_epochs(architecture: str, steps_per_epoch: int) -> int:
    """epochs=null: enough epochs for about `steps` optimizer steps (AUTO_EPOCHS by architecture)."""
    return auto_epochs(steps_per_epoch, **AUTO_EPOCHS[architecture])


def validation_metrics(model: SentimentModel, split, *, batch_size: int) -> dict:
    index = {label: i for i, label in enumerate(model.labels)}
    pairs = [(e.input, e.label) for e in split if e.label is not None]
    if not pairs:
        return {}
    probabilities = model.probabilities([text for text, _ in pairs], batch_size=batch_size)
    known = [(i, index[label]) for i, (_, label) in enumerate(pairs) if label in index]
    correct = sum(int(probabilities[i].argmax()) == target for i, target in known)
    metrics = {"val_accuracy": correct / len(pairs)}
    if known:
        rows = torch.tensor([i for i, _ in known])
        targets = torch.tensor([t for _, t in known])
        chosen = probabilities[rows, targets].clamp(min=1e-12)
        metrics["val_loss"] = float(-chosen.log().mean())
    return metrics


def _usable_checkpoint(ctx, architecture: str, labels: list[str]):
    return usable_checkpoint(
        ctx,
        {"architecture": architecture, "labels": labels},
        missing_ok=True,
        warning="The saved checkpoint belongs to another architecture or label set; training starts over.",
    )


def _tokenizer_tensors(model: SentimentModel) -> dict:
    """transformer-small's tokenizer, learned from the data, travels with its checkpoint."""
    if model.architecture != SMALL:
        return {}
    data = model.tokenizer.to_str().encode("utf-8")
    return {"tokenizer.json": torch.frombuffer(bytearray(data), dtype=torch.uint8)}


def _build_small(
    ctx, params: dict, labels: list[str], texts: list[str], checkpoint
) -> SentimentModel:
    from tokenizers import Tokenizer

    parent_state = None
    if checkpoint is not None and "tokenizer.json" in checkpoint.tensors:
        tokenizer = Tokenizer.from_str(
            bytes(checkpoint.tensors["tokenizer.json"].tolist()).decode("utf-8")
        )
        config = dict(checkpoint.state["model_config"])
    elif ctx.base is not None:
        # A parent version: keep its vocabulary and shape (the size params do not apply), and its
        # head when it predicts the same labels.
        if (recognize(Path(ctx.base)) or ("",))[0] != SMALL:
            raise TrainingError(
                f"The parent is not a {SMALL} sentiment model; {SMALL} continues only those."
            )
        parent = load(Path(ctx.base))
        tokenizer, config = parent.tokenizer, {**parent.config, "num_labels": len(labels)}
        parent_state = parent.module.state_dict()
        if parent.labels != labels:
            parent_state = {k: v for k, v in parent_state.items() if not k.startswith("head.")}
            ctx.log(f"The parent predicts {parent.labels}; a new head is trained for {labels}.")
    else:
        tokenizer = train_tokenizer(texts, int(params["vocab_size"]))
        config = small_config(params, tokenizer.get_vocab_size(), len(labels))
    _fit_tokenizer(tokenizer, config["max_length"])
    module = TinyEncoder(**config)
    if parent_state is not None:
        result = module.load_state_dict(parent_state, strict=False)
        if result.unexpected_keys or not all(
            key.startswith("head.") for key in result.missing_keys
        ):
            raise TrainingError(
                "The parent's weights do not fit its own configuration; the parent version is damaged."
            )
    return SentimentModel(SMALL, module, tokenizer, labels, config["max_length"], config)


def _build_bert(ctx, params: dict, labels: list[str]) -> SentimentModel:
    if ctx.base is None:
        raise TrainingError(
            f"{BERT} fine-tunes a pretrained BERT model: choose a base model (or a parent version) "
            f"for this job, or train {SMALL!r} from scratch."
        )
    base = Path(ctx.base)
    config = read_config(base)
    if config.get("model_type") not in BERT_FAMILIES or not _has_safetensors(base):
        raise TrainingError(
            f"The base model is not a BERT model with safetensors weights ({BERT} takes "
            f"model_type {', '.join(BERT_FAMILIES)})."
        )
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    head = head_labels(config)
    keep_head = bool(head) and head == labels
    if ctx.base_labels and (list(ctx.base_labels) == labels) != keep_head:
        ctx.log(
            f"The parent's labels {list(ctx.base_labels)} and the labels of its head {head} differ; "
            f"the head's own labels decide whether it is kept.",
            "warning",
        )
    try:
        module = AutoModelForSequenceClassification.from_pretrained(
            str(base),
            # sets num_labels (passing both warns when a parent's differ)
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            ignore_mismatched_sizes=True,
            use_safetensors=True,
            trust_remote_code=False,
        )
        tokenizer = AutoTokenizer.from_pretrained(str(base), trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"The base model could not be loaded: {exc}") from exc
    if head and not keep_head:
        _reset_head(module)
        ctx.log(f"The base model's head predicts {head}; a new head is trained for {labels}.")
    max_length = min(
        int(params["max_length"]), int(getattr(module.config, "max_position_embeddings", 512))
    )
    return SentimentModel(BERT, module, tokenizer, labels, max_length, {})


def _reset_head(module) -> None:
    """Re-initialize every parameter outside the encoder (the classification head)."""
    from transformers import AutoModelForSequenceClassification

    fresh = AutoModelForSequenceClassification.from_config(module.config).state_dict()
    prefix = module.base_model_prefix + "."
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if not name.startswith(prefix):
                parameter.copy_(fresh[name])


# --- artifacts -----------------------------------------------------------------------------------


def save(model: SentimentModel, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    common = {
        "verticals_architecture": model.architecture,
        "verticals_task": TASK,
        "verticals_labels": list(model.labels),
        "verticals_max_length": int(model.max_length),
        "verticals_format": FORMAT_VERSION,
        "id2label": {str(i): label for i, label in enumerate(model.labels)},
        "label2id": {label: i for i, label in enumerate(model.labels)},
    }
    if model.architecture == SMALL:
        save_weights(model.module.state_dict(), directory)
        model.tokenizer.save(str(directory / "tokenizer.json"))
        write_config(directory, {**common, "model": dict(model.config)})
        return
    model.module.save_pretrained(str(directory))  # transformers 5 writes safetensors only
    model.tokenizer.save_pretrained(str(directory))
    if not (directory / "model.safetensors").is_file():
        raise RuntimeError("save_pretrained did not write model.safetensors")
    write_config(directory, {**read_config(directory), **common})


def load(directory: Path, *, device: str = "cpu") -> SentimentModel:
    directory = Path(directory)
    recognized = recognize(directory)
    if recognized is None:
        raise ValueError(f"{directory} holds no sentiment model this task can load.")
    architecture, labels = recognized
    config = read_config(directory)
    if architecture == SMALL:
        from tokenizers import Tokenizer

        settings = dict(config["model"])
        module = TinyEncoder(**settings)
        module.load_state_dict(load_weights(directory))
        tokenizer = _fit_tokenizer(
            Tokenizer.from_file(str(directory / "tokenizer.json")), settings["max_length"]
        )
        model = SentimentModel(SMALL, module, tokenizer, labels, settings["max_length"], settings)
    else:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        # A headless encoder gets a new head: seed it so every load predicts alike.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            module = AutoModelForSequenceClassification.from_pretrained(
                str(directory), use_safetensors=True, trust_remote_code=False
            )
        tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
        labels = labels or [module.config.id2label[i] for i in range(module.config.num_labels)]
        limit = int(getattr(module.config, "max_position_embeddings", 512))
        max_length = min(int(config.get("verticals_max_length") or 512), limit, 512)
        model = SentimentModel(BERT, module, tokenizer, list(labels), max_length, {})
    model.module.to(device).eval()
    model.device = device
    return model


def _has_safetensors(directory: Path) -> bool:
    return (directory / "model.safetensors").is_file() or (
        directory / "model.safetensors.index.json"
    ).is_file()


def head_labels(config: dict) -> list[str]:
    """The labels of a Hugging Face classification head, by class id ([] for a base encoder)."""
    architectures = config.get("architectures") or []
    if not any(
        isinstance(a, str) and a.endswith("ForSequenceClassification") for a in architectures
    ):
        return []
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            by_id = {int(key): value for key, value in id2label.items()}
        except (TypeError, ValueError):
            return []
        if sorted(by_id) != list(range(len(by_id))) or not all(
            isinstance(v, str) and v for v in by_id.values()
        ):
            return []
        labels = [by_id[i] for i in range(len(by_id))]
    else:
        count = config.get("num_labels", 2)
        if (
            isinstance(count, int) and count > upload_limits().labels
        ):  # refused before millions of names are made
            raise ValueError(
                f"config.json's num_labels is {count}; at most {upload_limits().labels}"
            )
        labels = [f"LABEL_{i}" for i in range(count)] if isinstance(count, int) else []
    return labels if len(labels) >= 2 and len(set(labels)) == len(labels) else []


def recognize(directory: Path) -> tuple[str, list[str]] | None:
    """Reads config.json only (never code): our own artifacts, or a Hugging Face BERT directory."""
    directory = Path(directory)
    config = read_config(directory)
    if not config:
        return None
    architecture = config.get("verticals_architecture")
    if config.get("verticals_task", TASK) != TASK:
        architecture = None  # another task's artifact: only its Hugging Face layout may be of use
    saved_labels = config.get("verticals_labels")
    own_labels = (
        list(saved_labels)
        if isinstance(saved_labels, list) and all(isinstance(x, str) for x in saved_labels)
        else None
    )
    if architecture == SMALL:
        if (
            own_labels
            and isinstance(config.get("model"), dict)
            and (directory / "model.safetensors").is_file()
            and (directory / "tokenizer.json").is_file()
        ):
            return SMALL, own_labels
        return None
    if config.get("model_type") in BERT_FAMILIES and _has_safetensors(directory):
        if not any((directory / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
            return None
        if architecture == BERT and own_labels:
            return BERT, own_labels
        return BERT, head_labels(config)
    return None
