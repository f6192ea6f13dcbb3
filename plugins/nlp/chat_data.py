"""The text-generation dataset: JSON lines of chat conversations or prompt/completion pairs.

Each line is one training example, either

    {"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}

whose last message is the assistant's (the target the model learns to write), or

    {"prompt": "...", "completion": "..."}

An example's `input` (what the splits hold) is normalized to `{"messages": [...the conversation
before the target...], "completion": target}` or `{"prompt": ..., "completion": ...}`: the
prompt side is what `decode_input` takes, so `batch_predict` generates for the prompts of a
dataset and writes the reference completion beside each prediction. There are no labels (an
example's `label` is None), so the platform's split is a seeded random one.

Imports nothing heavy: Django imports it at start-up.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from verticals.sdk import DatasetSchema, Example
from verticals.sdk.datasets import Problems, jsonl_records

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 256


class ChatJsonl(DatasetSchema):
    """Chat conversations (`messages`) or `prompt`/`completion` pairs, one JSON object a line."""

    formats = (".jsonl",)
    input_kind = "text"
    min_rows = 4
    min_labels = 0

    def __init__(self, *, max_chars: int = 50_000):
        self.max_chars = max_chars  # characters of one example (prompt and completion together)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "labels": False,
            "max_chars": self.max_chars,
            "max_messages": MAX_MESSAGES,
            "fields": {
                "messages": "array of {role: system|user|assistant, content: string}; the last is the "
                "assistant's answer the model learns",
                "prompt": "string (with completion, instead of messages)",
                "completion": "string: the text the model learns to write after the prompt",
            },
            "example": {
                ".jsonl": "\n".join(
                    [
                        json.dumps(
                            {
                                "messages": [
                                    {"role": "user", "content": "What is the capital of France?"},
                                    {"role": "assistant", "content": "Paris."},
                                ]
                            }
                        ),
                        json.dumps(
                            {"prompt": "Translate to French: cheese\n", "completion": "fromage"}
                        ),
                    ]
                )
            },
        }

    def read(self, upload: Path, files_dir: Path) -> Iterator[Example]:
        self.check_format(upload.name)
        problems = Problems()
        for where, record in jsonl_records(upload, problems):
            found = read_record(record)
            if isinstance(found, str):
                problems.add(where, found)
                continue
            size = _chars(found)
            if size > self.max_chars:
                problems.add(where, f"the example has {size} characters; at most {self.max_chars}")
                continue
            yield Example(input=found, label=None, ref=where)
        problems.fail()


def read_record(record) -> dict | str:
    """One line's example, normalized (see the module's docstring), or what is wrong with it."""
    if not isinstance(record, dict):
        return "each line must be a JSON object with 'messages', or 'prompt' and 'completion'"
    if "messages" in record:
        if "prompt" in record or "completion" in record:
            return "give either 'messages' or 'prompt' and 'completion', not both"
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            return "'messages' must be a non-empty array of {role, content} objects"
        if len(messages) > MAX_MESSAGES:
            return f"'messages' holds {len(messages)} messages; at most {MAX_MESSAGES}"
        clean = []
        for index, message in enumerate(messages):
            problem = message_problem(message, f"messages[{index}]")
            if problem:
                return problem
            clean.append({"role": message["role"], "content": message["content"]})
        if clean[-1]["role"] != "assistant":
            return (
                f"the last message is the {clean[-1]['role']}'s; it must be the assistant's "
                f"(the answer the model learns to write)"
            )
        if len(clean) < 2:
            return "the conversation needs at least one message before the assistant's answer"
        return {"messages": clean[:-1], "completion": clean[-1]["content"]}
    if "prompt" in record or "completion" in record:
        for name in ("prompt", "completion"):
            value = record.get(name)
            if value is None:
                return f"'{name}' is missing (a prompt/completion example needs both)"
            if not isinstance(value, str):
                return f"'{name}' must be a string, not {_kind(value)}"
            if not value.strip():
                return f"'{name}' is empty"
        return {"prompt": record["prompt"], "completion": record["completion"]}
    return "the object has neither 'messages' nor 'prompt' and 'completion'"


def message_problem(message, where: str) -> str | None:
    if not isinstance(message, dict):
        return f"{where} must be an object {{role, content}}, not {_kind(message)}"
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
        return (
            f"{where}: 'role' is missing"
            if role is None
            else f"{where}: the role {role!r} is not one of {', '.join(ROLES)}"
        )
    if content is None:
        return f"{where}: 'content' is missing"
    if not isinstance(content, str):
        return f"{where}: 'content' must be a string, not {_kind(content)}"
    if not content.strip():
        return f"{where}: 'content' is empty"
    return None


def _chars(example: dict) -> int:
    return (
        sum(len(m["content"]) for m in example.get("messages", []))
        + len(example.get("prompt", ""))
        + len(example["completion"])
    )


def _kind(value) -> str:
    if value is None:
        return "null"
    return {
        list: "an array",
        dict: "an object",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


# --- example data ------------------------------------------------------------------------------

_CAPITALS = [
    ("France", "Paris"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Germany", "Berlin"),
    ("Japan", "Tokyo"),
    ("Egypt", "Cairo"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
    ("Canada", "Ottawa"),
    ("Norway", "Oslo"),
    ("Greece", "Athens"),
    ("Chile", "Santiago"),
]
_COLOURS = [
    ("grass", "green"),
    ("the sky", "blue"),
    ("snow", "white"),
    ("coal", "black"),
    ("a banana", "yellow"),
    ("a tomato", "red"),
    ("an orange", "orange"),
    ("a plum", "purple"),
]
_WORDS = [
    ("cheese", "fromage"),
    ("bread", "pain"),
    ("water", "eau"),
    ("cat", "chat"),
    ("dog", "chien"),
    ("house", "maison"),
    ("book", "livre"),
    ("apple", "pomme"),
    ("sun", "soleil"),
    ("moon", "lune"),
]
_SYSTEM = "You are a concise assistant."


def example_records(rows: int, seed: int = 0) -> list[dict]:
    """`rows` short, learnable examples in both formats (chat and prompt/completion), shuffled by `seed`."""
    generator = random.Random(seed)
    records = []
    for i in range(rows):
        kind = i % 3
        if kind == 0:
            country, capital = generator.choice(_CAPITALS)
            messages = [
                {"role": "user", "content": f"What is the capital of {country}?"},
                {"role": "assistant", "content": f"The capital of {country} is {capital}."},
            ]
            if generator.random() < 0.5:
                messages.insert(0, {"role": "system", "content": _SYSTEM})
            records.append({"messages": messages})
        elif kind == 1:
            thing, colour = generator.choice(_COLOURS)
            records.append(
                {
                    "messages": [
                        {"role": "user", "content": f"What colour is {thing}?"},
                        {"role": "assistant", "content": f"It is {colour}."},
                    ]
                }
            )
        else:
            word, french = generator.choice(_WORDS)
            records.append({"prompt": f"English: {word}\nFrench:", "completion": f" {french}"})
    generator.shuffle(records)
    return records


def write_jsonl(path: Path, records) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path
