"""The text-generation task: a causal language model that continues a prompt or answers a chat.

Nothing here imports torch or transformers at import time: the torch side lives in
`nlp.causal_lm`, imported inside the methods that need it; the dataset schema in `nlp.chat_data`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nlp.chat_data import MAX_MESSAGES, ROLES, ChatJsonl, example_records, write_jsonl
from verticals.sdk import (
    Architecture,
    ContextLengthExceeded,
    DatasetSplit,
    Evaluation,
    InputError,
    Task,
    text_input,
)
from verticals.sdk.contracts import PLAYGROUNDS

MAX_CHARS = 50_000  # characters of one input (a prompt, or a conversation's contents together)
DEFAULT_MAX_TOKENS = 256  # max_tokens when a call gives none (less when the context leaves less)
MAX_STOPS = 4
SMALL = "causal-lm-small"
FINETUNE = "causal-lm-finetune"


def _models():
    from nlp import causal_lm  # (torch loads with a model, not with the plugin)

    return causal_lm


PARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "epochs": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": 200,
            "default": None,
            "description": "Passes over the training examples; null: chosen from the dataset's size, enough for about "
            "300 optimizer steps within 5-100 epochs (causal-lm-small) or 30 steps within 1-5 epochs "
            "(causal-lm-finetune).",
        },
        "batch_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": 256,
            "default": 8,
            "description": "Examples per optimizer step.",
        },
        "learning_rate": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": None,
            "description": "Peak AdamW learning rate; null: 3e-3 (causal-lm-small), 5e-4 (LoRA), 5e-5 (full fine-tune).",
        },
        "max_length": {
            "type": "integer",
            "minimum": 16,
            "maximum": 8192,
            "default": 512,
            "description": "Tokens kept of each example, prompt and completion together (a longer "
            "completion keeps its start, a longer prompt its end).",
        },
        "weight_decay": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.0,
            "description": "AdamW weight decay (not applied to norms).",
        },
        "warmup_ratio": {
            "type": "number",
            "minimum": 0,
            "maximum": 0.5,
            "default": 0.05,
            "description": "Share of the steps with a linearly rising learning rate; it then decays linearly to 0.",
        },
        "method": {
            "enum": ["lora", "full"],
            "default": "lora",
            "description": "causal-lm-finetune only: 'lora' trains low-rank updates of the attention and MLP "
            "projections (merged into the weights when training ends); 'full' trains every weight.",
        },
        "lora_rank": {
            "type": "integer",
            "minimum": 1,
            "maximum": 256,
            "default": 8,
            "description": "LoRA only: rank of the updates.",
        },
        "lora_alpha": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1024,
            "default": 16,
            "description": "LoRA only: the updates are scaled by lora_alpha / lora_rank.",
        },
        "lora_dropout": {
            "type": "number",
            "minimum": 0,
            "maximum": 0.5,
            "default": 0.05,
            "description": "LoRA only: dropout on the updates' input.",
        },
        "d_model": {
            "enum": [32, 64, 128, 256, 384, 512, 768],
            "default": 256,
            "description": "causal-lm-small only: width of the model.",
        },
        "num_layers": {
            "type": "integer",
            "minimum": 1,
            "maximum": 16,
            "default": 4,
            "description": "causal-lm-small only: decoder layers.",
        },
        "num_heads": {
            "enum": [1, 2, 4, 8, 12, 16],
            "default": 4,
            "description": "causal-lm-small only: attention heads (d_model / num_heads must be even).",
        },
        "context_length": {
            "type": "integer",
            "minimum": 64,
            "maximum": 4096,
            "default": 1024,
            "description": "causal-lm-small only: the most tokens (bytes) prompt and answer may hold.",
        },
        "dropout": {
            "type": "number",
            "minimum": 0,
            "maximum": 0.5,
            "default": 0.0,
            "description": "causal-lm-small only: attention dropout.",
        },
    },
}

GENERATION_PARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "max_tokens": {
            "type": "integer",
            "minimum": 1,
            "description": f"The most tokens to generate; the prompt and max_tokens must fit the model's "
            f"context. Default: {DEFAULT_MAX_TOKENS}, or what the context leaves.",
        },
        "temperature": {
            "type": "number",
            "minimum": 0,
            "maximum": 2,
            "description": "Sampling temperature; 0 chooses the likeliest token each time (greedy). Default: "
            "the model's generation_config (greedy unless it says to sample).",
        },
        "top_p": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "Nucleus sampling: sample from the likeliest tokens holding this much probability. Default 1.",
        },
        "stop": {
            "oneOf": [
                {"type": "string", "minLength": 1},
                {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "maxItems": MAX_STOPS,
                },
            ],
            "description": f"Up to {MAX_STOPS} strings that end the text (not included in it).",
        },
        "seed": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2**63 - 1,
            "description": "Sampling with the same seed (and the same prompt and parameters) repeats exactly.",
        },
    },
}

_CONTENT = {
    "oneOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "text"],
                "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
            },
            "description": "text parts, as OpenAI's clients send them",
        },
    ]
}
_MESSAGE = {
    "type": "object",
    "required": ["role", "content"],
    "properties": {"role": {"enum": [*ROLES, "developer"]}, "content": _CONTENT},
}

INPUT_SCHEMA = {
    "oneOf": [
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_CHARS,
            "description": "A prompt: the model continues this text (no chat template).",
        },
        {
            "type": "object",
            "required": ["messages"],
            "additionalProperties": False,
            "properties": {
                "messages": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_MESSAGES,
                    "items": _MESSAGE,
                }
            },
            "description": "A conversation, written with the model's chat template; the model answers as the assistant.",
        },
    ],
    "examples": [
        "English: bread\nFrench:",
        {"messages": [{"role": "user", "content": "What is the capital of France?"}]},
    ],
}

OUTPUT_SCHEMA = {
    "type": "object",
    "required": ["generated_text", "finish_reason", "usage"],
    "additionalProperties": False,
    "properties": {
        "generated_text": {"type": "string", "description": "The completion (without the prompt)."},
        "finish_reason": {
            "enum": ["stop", "length"],
            "description": "stop: the model ended its answer or a stop string came; length: max_tokens was reached.",
        },
        "usage": {
            "type": "object",
            "required": ["prompt_tokens", "completion_tokens"],
            "additionalProperties": False,
            "properties": {
                "prompt_tokens": {"type": "integer", "minimum": 0},
                "completion_tokens": {"type": "integer", "minimum": 0},
            },
        },
    },
}


class TextGenerationTask(Task):
    name = "text-generation"
    domain = "nlp"
    title = "Text generation"
    description = (
        "A causal language model that answers chats or continues prompts. Train a small one from scratch, or fine-tune a "
        "pretrained one (SmolLM2, Llama-family) on your conversations, fully or with LoRA. Each input is a prompt string "
        '(continued as text) or {"messages": [{"role": "system"|"user"|"assistant", "content": …}]} (written '
        'with the model\'s chat template); each output is {"generated_text", "finish_reason": "stop"|"length", '
        '"usage": {"prompt_tokens", "completion_tokens"}}. Parameters: max_tokens, temperature (0: greedy, the '
        "default unless the model's generation_config samples), top_p, stop (up to 4 strings), seed. Metrics: the loss "
        "per answer token and its perplexity on held-out examples (lower is better)."
    )
    dataset = ChatJsonl(max_chars=MAX_CHARS)
    architectures = (
        Architecture(
            SMALL,
            "Small causal LM (from scratch)",
            "A small Llama-style decoder over bytes (no vocabulary to learn), trained on your examples only. "
            "For narrow, repetitive text; it knows nothing else.",
        ),
        Architecture(
            FINETUNE,
            "Causal LM fine-tune",
            "Fine-tunes a pretrained causal language model (a base model such as SmolLM2-135M-Instruct, or a "
            "parent version): LoRA (default) or every weight. The result is a plain Hugging Face model.",
            families=("llama", "mistral", "qwen2"),
            requires_base=True,
        ),
    )
    default_architecture = SMALL
    params_schema = PARAMS_SCHEMA
    tiny_params = {
        "epochs": 12,
        "batch_size": 8,
        "max_length": 128,
        "d_model": 64,
        "num_layers": 2,
        "num_heads": 4,
        "context_length": 256,
        "learning_rate": 3e-3,
    }
    generation_params_schema = GENERATION_PARAMS_SCHEMA
    input_schema = INPUT_SCHEMA
    output_schema = OUTPUT_SCHEMA
    metrics = ("validation_loss", "perplexity")
    primary_metric = "perplexity"  # lower is better
    optimizations = ()
    meters = {"textgen.tokens": 1.0}
    streams = True
    labelled = False
    playground = "chat" if "chat" in PLAYGROUNDS else "text"
    max_batch = 8

    # --- training and evaluation ---------------------------------------------------------

    def train(self, ctx) -> Any:
        return _models().train(ctx)

    def evaluate(self, model, split: DatasetSplit) -> Evaluation:
        metrics = _models().evaluate(model, split.examples, batch_size=self.max_batch)
        return Evaluation(metrics=metrics, report={"examples": len(split)})

    # --- artifacts ------------------------------------------------------------------------

    def save(self, model, directory: Path) -> None:
        _models().save(model, Path(directory))

    def load(self, directory: Path, *, device: str = "cpu") -> Any:
        return _models().load(Path(directory), device=device)

    def recognize(self, directory: Path) -> tuple[str, list[str]] | None:
        return _models().recognize(Path(directory))

    # --- prediction -----------------------------------------------------------------------

    def decode_input(self, raw: Any) -> dict:
        """{"prompt": str} or {"messages": [{"role", "content"}, …]}. Dataset rows (which also hold
        their "completion") decode to their prompt side, so batch_predict runs over a dataset."""
        if isinstance(raw, str):
            return {"prompt": text_input(raw, max_chars=MAX_CHARS)}
        if isinstance(raw, dict) and "messages" in raw:
            return {"messages": decode_messages(raw["messages"])}
        if isinstance(raw, dict) and "prompt" in raw:
            return {"prompt": text_input(raw["prompt"], max_chars=MAX_CHARS)}
        raise InputError(
            'Each input is a prompt string, or an object {"messages": [{"role": "user", "content": "…"}]}'
            f"; not {_kind(raw)}" + (" without 'messages'." if isinstance(raw, dict) else ".")
        )

    def generation_request(self, model, decoded_input: dict, options: dict | None):
        """The engine's request for one decoded input: the prompt's tokens and checked parameters."""
        # (torch loads with a model, not with the plugin)
        from verticals.sdk.generation import GenerationRequest

        chosen = generation_options(options)
        try:
            ids = _models().prompt_ids(model.tokenizer, decoded_input)
        except _models().NoChatTemplate as exc:
            raise InputError(str(exc)) from exc
        context = int(model.context_length)
        if not ids:
            raise InputError("The prompt encodes to no tokens; send some text.")
        max_tokens = chosen.get("max_tokens")
        if max_tokens is not None:
            if len(ids) + max_tokens > context:
                raise ContextLengthExceeded(
                    f"The prompt has {len(ids)} tokens and max_tokens is {max_tokens}: {len(ids) + max_tokens} "
                    f"in all, over this model's context of {context} tokens. Shorten the prompt or lower max_tokens."
                )
        else:
            max_tokens = min(DEFAULT_MAX_TOKENS, context - len(ids))
            if max_tokens < 1:
                raise ContextLengthExceeded(
                    f"The prompt has {len(ids)} tokens; this model's context holds {context}, with room for "
                    f"at least one generated token. Shorten the prompt."
                )
        temperature, top_p = chosen.get("temperature"), chosen.get("top_p")
        if temperature is None:
            config = getattr(model.model, "generation_config", None)
            sampling = bool(getattr(config, "do_sample", False))
            temperature = float(getattr(config, "temperature", None) or 1.0) if sampling else 0.0
            if top_p is None and sampling:
                top_p = float(getattr(config, "top_p", None) or 1.0)
        return GenerationRequest(
            prompt_ids=ids,
            max_new_tokens=int(max_tokens),
            temperature=float(temperature),
            top_p=float(top_p if top_p is not None else 1.0),
            stop=list(chosen.get("stop", [])),
            seed=chosen.get("seed"),
        )

    def engine(self, model):
        """The loaded model's one generation engine (made at the first call, kept on the model;
        `model.close()` stops it)."""
        return model.engine(max_batch=self.max_batch)

    def predict(self, model, inputs: list, *, options: dict | None = None) -> list:
        requests = [self.generation_request(model, decoded, options) for decoded in inputs]
        if not requests:
            return []
        outputs = []
        for event in self.engine(model).generate(requests):
            if event.finish_reason not in ("stop", "length"):
                raise RuntimeError(
                    f"Generation ended early ({event.finish_reason}): {event.error or 'the engine stopped'}."
                )
            outputs.append(
                {
                    "generated_text": event.text,
                    "finish_reason": event.finish_reason,
                    "usage": {
                        "prompt_tokens": int(event.prompt_tokens),
                        "completion_tokens": int(event.completion_tokens),
                    },
                }
            )
        return outputs

    # --- test kit -------------------------------------------------------------------------

    def example_dataset(self, directory: Path, *, rows: int = 60, seed: int = 0) -> Path:
        return write_jsonl(Path(directory) / "chat.jsonl", example_records(rows, seed))

    def example_inputs(self) -> list:
        return [
            "English: bread\nFrench:",
            {"messages": [{"role": "user", "content": "What is the capital of Italy?"}]},
            {
                "messages": [
                    {"role": "system", "content": "You are a concise assistant."},
                    {"role": "user", "content": "What colour is snow?"},
                ]
            },
        ]


def decode_messages(messages) -> list[dict]:
    """Checked messages as {role, content} (OpenAI's text parts joined; "developer" read as "system")."""
    if not isinstance(messages, list) or not messages:
        raise InputError(
            "'messages' is empty; send at least one message, e.g. "
            '[{"role": "user", "content": "Hello"}].'
            if isinstance(messages, list)
            else f"'messages' must be an array of {{role, content}} objects, not {_kind(messages)}."
        )
    if len(messages) > MAX_MESSAGES:
        raise InputError(f"'messages' holds {len(messages)} messages; at most {MAX_MESSAGES}.")
    decoded, total = [], 0
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InputError(f"{where} must be an object {{role, content}}, not {_kind(message)}.")
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role not in ROLES:
            raise InputError(
                f"{where}: 'role' is missing; give one of {', '.join(ROLES)}."
                if role is None
                else f"{where}: the role {role!r} is not one of {', '.join(ROLES)}."
            )
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for part in content:
                if not (
                    isinstance(part, dict)
                    and part.get("type") == "text"
                    and isinstance(part.get("text"), str)
                ):
                    raise InputError(
                        f'{where}: content parts must be {{"type": "text", "text": …}}; this model reads text only.'
                    )
                parts.append(part["text"])
            content = "".join(parts)
        if not isinstance(content, str):
            raise InputError(
                f"{where}: 'content' is missing."
                if content is None
                else f"{where}: 'content' must be a string, not {_kind(content)}."
            )
        if not content.strip() and role != "assistant":
            raise InputError(f"{where}: 'content' is empty; send some text.")
        total += len(content)
        if total > MAX_CHARS:
            raise InputError(
                f"The messages hold more than {MAX_CHARS} characters; send a shorter conversation."
            )
        decoded.append({"role": role, "content": content})
    return decoded


def generation_options(options: dict | None) -> dict:
    """The generation parameters of a call, checked (InputError names the one that is wrong)."""
    options = dict(options or {})
    allowed = GENERATION_PARAMS_SCHEMA["properties"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(
            f"Unknown parameter(s) {', '.join(unknown)}; text generation takes {', '.join(allowed)}."
        )
    chosen: dict = {}
    if options.get("max_tokens") is not None:
        value = options["max_tokens"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"max_tokens must be an integer of at least 1, not {value!r}.")
        chosen["max_tokens"] = value
    if options.get("temperature") is not None:
        value = options["temperature"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2:
            raise InputError(f"temperature must be a number from 0 (greedy) to 2, not {value!r}.")
        chosen["temperature"] = float(value)
    if options.get("top_p") is not None:
        value = options["top_p"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise InputError(f"top_p must be a number above 0 and at most 1, not {value!r}.")
        chosen["top_p"] = float(value)
    if options.get("stop") is not None:
        value = options["stop"]
        stops = [value] if isinstance(value, str) else value
        if (
            not isinstance(stops, list)
            or len(stops) > MAX_STOPS
            or not all(isinstance(s, str) and s for s in stops)
        ):
            raise InputError(
                f"stop must be a non-empty string or a list of at most {MAX_STOPS} non-empty strings."
            )
        chosen["stop"] = list(stops)
    if options.get("seed") is not None:
        value = options["seed"]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise InputError(f"seed must be an integer from 0 to 2**63 - 1, not {value!r}.")
        chosen["seed"] = value
    return chosen


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
