"""The sentiment task: classify a text into the labels of the customer's dataset.

Nothing here imports torch or transformers at import time: the torch side lives in
`nlp.text_models`, imported inside the methods that need it.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

from verticals.sdk import (
    CLASSIFICATION_OUTPUT,
    Architecture,
    DatasetSplit,
    Evaluation,
    InputError,
    LabelledText,
    Task,
    classification_evaluation,
    label_scores,
    text_input,
)

MAX_CHARS = 10_000
SMALL = "transformer-small"
BERT = "bert-finetune"


def _models():
    from nlp import text_models  # (torch loads with a model, not with the plugin)

    return text_models


PARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "epochs": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": 500,
            "default": None,
            "description": "Passes over the training rows; null: chosen from the dataset's size, enough for "
            "about 300 optimizer steps within 5-40 epochs (transformer-small) or 100 steps "
            "within 3-20 epochs (bert-finetune).",
        },
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": 512,
            "default": 16,
            "description": "Texts per optimizer step.",
        },
        "learning_rate": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": None,
            "description": "Peak AdamW learning rate; null: the architecture's default "
            "(transformer-small 1e-3, bert-finetune 5e-5).",
        },
        "max_length": {
            "type": "integer",
            "minimum": 8,
            "maximum": 512,
            "default": 128,
            "description": "Tokens kept of each text (longer texts are truncated).",
        },
        "weight_decay": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.01,
            "description": "AdamW weight decay (not applied to biases and norms).",
        },
        "warmup_ratio": {
            "type": "number",
            "minimum": 0,
            "maximum": 0.5,
            "default": 0.1,
            "description": "Share of the steps with a linearly rising learning rate; it then decays linearly to 0.",
        },
        "vocab_size": {
            "type": "integer",
            "minimum": 100,
            "maximum": 60_000,
            "default": 8000,
            "description": "transformer-small only: the most WordPiece tokens learned from the training texts.",
        },
        "d_model": {
            "enum": [32, 64, 128, 256, 384, 512],
            "default": 128,
            "description": "transformer-small only: width of the encoder.",
        },
        "num_layers": {
            "type": "integer",
            "minimum": 1,
            "maximum": 8,
            "default": 2,
            "description": "transformer-small only: encoder layers.",
        },
        "num_heads": {
            "enum": [1, 2, 4, 8],
            "default": 4,
            "description": "transformer-small only: attention heads (d_model is a multiple of each choice).",
        },
        "dropout": {
            "type": "number",
            "minimum": 0,
            "maximum": 0.5,
            "default": 0.1,
            "description": "transformer-small only: dropout rate (bert-finetune keeps the base model's).",
        },
    },
}


class SentimentTask(Task):
    name = "sentiment"
    domain = "nlp"
    title = "Sentiment analysis"
    description = (
        "Classifies a text (a review, a message, a ticket) into the labels of your dataset, "
        "e.g. positive / negative / neutral. Train a small transformer from scratch, or fine-tune "
        "a pretrained BERT model."
    )
    dataset = LabelledText(max_chars=MAX_CHARS)
    architectures = (
        Architecture(
            SMALL,
            "Small transformer (from scratch)",
            "A 2-layer transformer encoder with a WordPiece vocabulary learned from your texts. "
            "Fast; needs a few hundred rows or more to do well.",
        ),
        Architecture(
            BERT,
            "BERT fine-tune",
            "Fine-tunes a pretrained BERT-family encoder (a base model or a parent version) with a "
            "classification head. Accurate from a few dozen rows.",
            families=("bert",),
            requires_base=True,
        ),
    )
    default_architecture = SMALL
    params_schema = PARAMS_SCHEMA
    tiny_params = {
        "epochs": 12,
        "batch_size": 16,
        "max_length": 32,
        "vocab_size": 500,
        "d_model": 64,
        "num_layers": 1,
        "num_heads": 2,
        "learning_rate": 3e-3,
    }
    input_schema = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_CHARS,
        "description": "The text to classify.",
        "examples": ["The battery lasts for days, I love it."],
    }
    output_schema = CLASSIFICATION_OUTPUT
    metrics = ("accuracy", "macro_f1")
    primary_metric = "accuracy"
    optimizations = ("quantize", "prune", "distill")
    meters = {"inference.requests": 1.0}
    playground = "text"
    max_batch = 64

    # --- training and evaluation ---------------------------------------------------------

    def train(self, ctx) -> Any:
        return _models().train(ctx)

    def evaluate(self, model, split: DatasetSplit) -> Evaluation:
        labelled = [e for e in split if e.label is not None]
        labels = list(split.labels) + [label for label in model.labels if label not in split.labels]
        index = {label: i for i, label in enumerate(labels)}
        probabilities = model.probabilities(
            [e.input for e in labelled], batch_size=self.max_batch
        ).tolist()
        columns = [index[label] for label in model.labels]
        y_true = [
            index[e.label] if e.label in index else _unknown(index, labels, e.label)
            for e in labelled
        ]
        y_pred, scores = [], []
        for row in probabilities:
            best = max(range(len(row)), key=row.__getitem__)
            y_pred.append(columns[best])
            full = [0.0] * len(labels)
            for column, value in zip(columns, row, strict=False):
                full[column] = value
            scores.append(full)
        return classification_evaluation(y_true, y_pred, labels, scores=scores)

    # --- artifacts ------------------------------------------------------------------------

    def save(self, model, directory: Path) -> None:
        _models().save(model, Path(directory))

    def load(self, directory: Path, *, device: str = "cpu") -> Any:
        return _models().load(Path(directory), device=device)

    def recognize(self, directory: Path) -> tuple[str, list[str]] | None:
        return _models().recognize(Path(directory))

    # --- prediction -----------------------------------------------------------------------

    def decode_input(self, raw: Any) -> str:
        return text_input(raw, max_chars=MAX_CHARS)

    def predict(self, model, inputs: list, *, options: dict | None = None) -> list:
        top_k = (options or {}).get("top_k")
        if top_k is not None and (
            isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        ):
            raise InputError("top_k must be a positive integer (the number of labels to return).")
        probabilities = model.probabilities(list(inputs), batch_size=self.max_batch).tolist()
        return [label_scores(row, model.labels, top_k) for row in probabilities]

    # --- test kit -------------------------------------------------------------------------

    def example_dataset(self, directory: Path, *, rows: int = 60, seed: int = 0) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "sentiment.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(example_reviews(rows, seed))
        return path

    def example_inputs(self) -> list:
        return [
            "I absolutely loved it, the quality is excellent and it works perfectly.",
            "Terrible purchase: it broke after two days and support never answered.",
            "The delivery was quick and the staff were friendly.",
        ]


def _unknown(index: dict, labels: list, label: str) -> int:
    """A true label neither the split's label list nor the model knows: give it its own column."""
    index[label] = len(labels)
    labels.append(label)
    return index[label]


# --- example data ------------------------------------------------------------------------------

_SUBJECTS = [
    "The battery",
    "This phone",
    "The hotel room",
    "The delivery",
    "Customer support",
    "The food",
    "This laptop",
    "The headphones",
    "The checkout",
    "The coffee maker",
    "This book",
    "The app",
]
_POSITIVE = [
    "is excellent",
    "works perfectly",
    "is great",
    "was wonderful",
    "is amazing",
    "is fantastic",
]
_NEGATIVE = [
    "is terrible",
    "broke quickly",
    "is awful",
    "was horrible",
    "is useless",
    "was disappointing",
]
_POSITIVE_TAILS = [
    ", I love it",
    ", highly recommended",
    ", five stars",
    " and I am very happy",
    ", would buy again",
]
_NEGATIVE_TAILS = [
    ", I hate it",
    ", not recommended",
    ", one star",
    " and I am very angry",
    ", I want a refund",
]


def example_reviews(rows: int, seed: int = 0) -> list[tuple[str, str]]:
    """`rows` short reviews from templates, half positive and half negative, shuffled by `seed`."""
    generator = random.Random(seed)
    reviews = []
    for i in range(rows):
        positive = i % 2 == 0
        phrase = generator.choice(_POSITIVE if positive else _NEGATIVE)
        tail = generator.choice(_POSITIVE_TAILS if positive else _NEGATIVE_TAILS)
        reviews.append(
            (
                f"{generator.choice(_SUBJECTS)} {phrase}{tail}.",
                "positive" if positive else "negative",
            )
        )
    generator.shuffle(reviews)
    return reviews
