"""The text-generation task: the chat dataset schema, the byte tokenizer, training from scratch and
fine-tuning (full and LoRA) of tiny Llama models, checkpoints, artifacts, generation requests and
input decoding. No database, no downloads: every model is built here."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import torch

from nlp import causal_lm
from nlp.chat_data import ChatJsonl, example_records, write_jsonl
from nlp.plugin import NlpPlugin
from nlp.textgen import GENERATION_PARAMS_SCHEMA, MAX_CHARS, TextGenerationTask, generation_options
from verticals.sdk import DatasetInvalid, DatasetSplit, InputError, LocalTrainContext, TrainingError
from verticals.sdk.params import problems, with_defaults
from verticals.sdk.testing.conformance import local_splits

CHATML_QUESTION = (
    "<|im_start|>user\nWhat is the capital of Italy?<|im_end|>\n<|im_start|>assistant\n"
)
WORDS = ["apple", "river", "stone", "cloud", "maple", "tiger", "lemon", "piano"]
# Margins the trainings below must reach (validation loss per answer token, in nats).
FROM_SCRATCH_DROP = (
    2.0  # causal-lm-small on the repetitive set: from ~5.6 (uniform over 260 tokens) to below ~3.6
)
FINE_TUNE_DROP = 1.5  # LoRA and full fine-tunes of a tiny base trained on other text (from ~4.7)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The tiny models gain nothing from intra-op threads; one thread keeps timings steady on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class RecordingContext(LocalTrainContext):
    """Keeps every checkpoint (LocalTrainContext keeps the last one)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.checkpoints = []

    def checkpoint(self, step, tensors, state=None):
        super().checkpoint(step, tensors, state)
        self.checkpoints.append(self._checkpoint)


def repetitive_records(rows: int, seed: int) -> list[dict]:
    """A tiny, very regular set: chats that repeat a word, and prompt/completion pairs that spell it."""
    import random

    generator = random.Random(seed)
    records = []
    for i in range(rows):
        word = generator.choice(WORDS)
        if i % 2:
            records.append(
                {
                    "messages": [
                        {"role": "user", "content": f"Repeat {word}"},
                        {"role": "assistant", "content": f"{word} {word}"},
                    ]
                }
            )
        else:
            records.append({"prompt": f"Spell {word}:", "completion": " " + "-".join(word)})
    return records


def closed(model):
    model.close()
    return model


@pytest.fixture(scope="module")
def task():
    return TextGenerationTask()


@pytest.fixture(scope="module")
def splits(task, tmp_path_factory):
    root = tmp_path_factory.mktemp("textgen-data")
    upload = write_jsonl(root / "repeat.jsonl", repetitive_records(60, 0))
    return local_splits(task, upload, root / "work", seed=0)


@pytest.fixture(scope="module")
def trained(task, splits):
    ctx = RecordingContext(
        task,
        train=splits["train"],
        validation=splits["validation"],
        params=task.tiny_params,
        seed=3,
    )
    model = task.train(ctx)
    yield ctx, model
    model.close()


@pytest.fixture(scope="module")
def saved(task, trained, tmp_path_factory):
    directory = tmp_path_factory.mktemp("textgen-saved")
    task.save(trained[1], directory)
    return directory


@pytest.fixture(scope="module")
def tiny_base(task, tmp_path_factory) -> Path:
    """A plain Hugging Face causal LM directory, as a tenant imports one or the garden holds it (no
    verticals keys): causal-lm-small trained on other text (the example dataset), so that it is a
    pretrained model the fine-tunes below adapt, not random weights."""
    root = tmp_path_factory.mktemp("tiny-llama")
    other = local_splits(
        task, task.example_dataset(root / "upload", rows=60, seed=2), root / "work"
    )
    ctx = LocalTrainContext(
        task,
        train=other["train"],
        validation=other["validation"],
        params={**task.tiny_params, "epochs": 10},
        seed=5,
    )
    model = closed(task.train(ctx))
    directory = root / "model"
    model.model.save_pretrained(str(directory))
    model.tokenizer.save_pretrained(str(directory))
    return directory


def state_of(module) -> dict:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


# --- declarations ----------------------------------------------------------------------------------


def test_plugin_declares_the_text_generation_task(task):
    assert TextGenerationTask in NlpPlugin.tasks
    assert (task.name, task.domain, task.streams, task.labelled) == (
        "text-generation",
        "nlp",
        True,
        False,
    )
    assert task.meters == {"textgen.tokens": 1.0} and task.max_batch == 8
    assert task.metrics == ("validation_loss", "perplexity") and task.primary_metric == "perplexity"
    assert [a.name for a in task.architectures] == ["causal-lm-small", "causal-lm-finetune"]
    finetune = task.architecture("causal-lm-finetune")
    assert finetune.requires_base and "llama" in finetune.families
    assert [a.name for a in task.architectures_for("llama")] == ["causal-lm-finetune"]


def test_schemas_are_valid_and_every_param_has_a_default(task):
    for schema in (
        task.params_schema,
        task.input_schema,
        task.output_schema,
        task.generation_params_schema,
    ):
        jsonschema.Draft202012Validator.check_schema(schema)
    defaults = with_defaults(task.params_schema, {})
    assert set(defaults) == set(task.params_schema["properties"])
    assert problems(task.params_schema, defaults) == []
    assert problems(task.params_schema, with_defaults(task.params_schema, task.tiny_params)) == []
    assert problems(task.params_schema, {"method": "qlora"}) and problems(
        task.params_schema, {"colour": "red"}
    )
    for value in task.example_inputs():
        jsonschema.validate(value, task.input_schema)
    for bad in (
        "",
        {"messages": []},
        {"messages": [{"role": "robot", "content": "hi"}]},
        {"prompt": "x"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, task.input_schema)
    jsonschema.validate(
        {"max_tokens": 5, "temperature": 0.7, "top_p": 0.9, "stop": ["\n"], "seed": 1},
        task.generation_params_schema,
    )
    for bad in (
        {"max_tokens": 0},
        {"temperature": 2.5},
        {"top_p": 0},
        {"stop": ["a"] * 5},
        {"n": 2},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, task.generation_params_schema)


def test_importing_the_plugin_loads_no_torch():
    code = (
        "import sys; import nlp.plugin, nlp.textgen, nlp.chat_data; "
        "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


# --- the dataset -----------------------------------------------------------------------------------


def ingest(tmp_path, lines, name="chat.jsonl"):
    path = tmp_path / name
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )
    return ChatJsonl().ingest(path, tmp_path)


GOOD_CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]
}
GOOD_PAIR = {"prompt": "2+2=", "completion": "4"}


def test_both_formats_read_into_prompt_and_completion(tmp_path):
    examples = ingest(tmp_path, [GOOD_CHAT, GOOD_PAIR, "", GOOD_CHAT, GOOD_PAIR])
    assert [e.ref for e in examples] == ["line 1", "line 2", "line 4", "line 5"]
    assert examples[0].input == {"messages": GOOD_CHAT["messages"][:2], "completion": "Hello."}
    assert examples[1].input == {"prompt": "2+2=", "completion": "4"}
    assert all(e.label is None for e in examples)


def test_problems_are_reported_by_line(tmp_path):
    lines = [
        GOOD_CHAT,
        "{not json",
        {"text": "a sentiment row"},
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]},
        {"messages": [{"role": "robot", "content": "Hi"}, {"role": "assistant", "content": "Yes"}]},
        {"messages": []},
        {"prompt": "2+2="},
        {"prompt": "2+2=", "completion": 4},
        {"messages": [{"role": "assistant", "content": "Alone"}]},
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]},
        {"messages": GOOD_CHAT["messages"], "prompt": "both"},
        ["a", "list"],
        {"messages": ["hi", {"role": "assistant", "content": "x"}]},
    ]
    with pytest.raises(DatasetInvalid) as refused:
        ingest(tmp_path, lines)
    found = {p.where: p.message for p in refused.value.problems}
    assert "line 1" not in found
    assert found["line 2"].startswith("not valid JSON")
    assert "neither 'messages' nor 'prompt' and 'completion'" in found["line 3"]
    assert "the last message is the user's; it must be the assistant's" in found["line 4"]
    assert found["line 5"] == "messages[1]: 'content' is empty"
    assert "the role 'robot' is not one of system, user, assistant" in found["line 6"]
    assert "'messages' must be a non-empty array" in found["line 7"]
    assert found["line 8"] == "'completion' is missing (a prompt/completion example needs both)"
    assert found["line 9"] == "'completion' must be a string, not a number"
    assert "at least one message before the assistant's answer" in found["line 10"]
    assert found["line 11"] == "messages[0]: 'content' is missing"
    assert "not both" in found["line 12"]
    assert "must be a JSON object" in found["line 13"]
    assert found["line 14"] == "messages[0] must be an object {role, content}, not str"
    assert len(found) == 13


def test_uploads_need_rows_jsonl_and_utf8(tmp_path):
    with pytest.raises(DatasetInvalid, match="holds 2 example"):
        ingest(tmp_path, [GOOD_CHAT, GOOD_PAIR])
    with pytest.raises(DatasetInvalid, match="accepted file"):
        ChatJsonl().check_format("chat.csv")
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        json.dumps({"prompt": "caf\u00e9", "completion": "x"})
        .encode("utf-8")
        .replace(b"\\u00e9", b"\xe9")
    )
    with pytest.raises(DatasetInvalid, match="not UTF-8"):
        ChatJsonl().ingest(path, tmp_path)
    with pytest.raises(DatasetInvalid) as refused:
        ChatJsonl(max_chars=10).ingest(
            write_jsonl(
                tmp_path / "long.jsonl", [GOOD_PAIR] * 3 + [{"prompt": "a" * 20, "completion": "b"}]
            ),
            tmp_path,
        )
    assert (
        refused.value.problems[0].where == "line 4"
        and "at most 10" in refused.value.problems[0].message
    )


def test_example_dataset_is_seeded_and_ingestible(task, tmp_path):
    path = task.example_dataset(tmp_path, rows=40, seed=4)
    assert path.read_text() == task.example_dataset(tmp_path / "again", rows=40, seed=4).read_text()
    assert example_records(40, 4) != example_records(40, 5)
    examples = task.dataset.ingest(path, tmp_path)
    assert len(examples) == 40
    assert {("messages" in e.input) for e in examples} == {True, False}


def test_the_split_is_seeded_and_random(task, tmp_path):
    upload = task.example_dataset(tmp_path, rows=60, seed=0)
    first = local_splits(task, upload, tmp_path / "a", seed=7)
    again = local_splits(task, upload, tmp_path / "b", seed=7)
    other = local_splits(task, upload, tmp_path / "c", seed=8)
    refs = {name: [e.ref for e in split] for name, split in first.items()}
    assert refs == {name: [e.ref for e in split] for name, split in again.items()}
    assert refs != {name: [e.ref for e in split] for name, split in other.items()}
    assert {name: len(split) for name, split in first.items()} == {
        "train": 48,
        "validation": 6,
        "test": 6,
    }


# --- the tokenizer ---------------------------------------------------------------------------------


def test_the_byte_tokenizer_is_fixed_and_encodes_any_text():
    first, second = causal_lm.byte_tokenizer(), causal_lm.byte_tokenizer()
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    assert (
        len(first) == 260 and first.convert_ids_to_tokens([0, 1, 2, 3]) == causal_lm.SPECIAL_TOKENS
    )
    text = "Héllo, 世界! <tab>\t"
    ids = first(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode("utf-8")) and all(4 <= i < 260 for i in ids)
    assert first.decode(ids) == text
    assert first("A")["input_ids"] == [4 + ord("A")]  # the specials, then the bytes by value


def test_the_chat_template_is_applied(task, trained):
    _, model = trained
    request = task.generation_request(model, task.decode_input(task.example_inputs()[1]), {})
    assert model.tokenizer.decode(request.prompt_ids) == CHATML_QUESTION
    plain = task.generation_request(model, task.decode_input("English: bread\nFrench:"), {})
    assert model.tokenizer.decode(plain.prompt_ids) == "English: bread\nFrench:"
    assert len(plain.prompt_ids) == len("English: bread\nFrench:")


# --- training from scratch -------------------------------------------------------------------------


def test_training_lowers_the_validation_loss_by_the_stated_margin(task, trained, splits):
    ctx, model = trained
    initial = model.facts["initial_validation_loss"]
    validations = [r[2] for r in ctx.reports if "val_loss" in r[2]]
    assert validations[0]["val_loss"] == initial and ctx.reports[0][0] == 0
    final = validations[-1]["val_loss"]
    print(f"\ncausal-lm-small: validation loss {initial:.3f} -> {final:.3f}")
    assert final <= initial - FROM_SCRATCH_DROP, (initial, final)
    evaluation = task.evaluate(model, splits["validation"])
    assert evaluation.metrics["validation_loss"] == pytest.approx(final, rel=1e-5)
    assert evaluation.metrics["perplexity"] == pytest.approx(
        torch.tensor(final).exp().item(), rel=1e-5
    )
    assert evaluation.metrics["initial_validation_loss"] == initial
    assert evaluation.report == {"examples": len(splits["validation"])}


def test_training_reports_and_checkpoints_each_epoch(task, trained, splits):
    ctx, model = trained
    epochs = task.tiny_params["epochs"]
    steps_per_epoch = -(-len(splits["train"]) // task.tiny_params["batch_size"])
    losses = [r for r in ctx.reports if "train_loss" in r[2]]
    assert [r[0] for r in losses] == list(range(1, epochs * steps_per_epoch + 1))
    epoch_points = [r[2] for r in ctx.reports if "epoch_train_loss" in r[2]]
    assert len(epoch_points) == epochs and all(
        {"val_loss", "val_perplexity"} <= set(m) for m in epoch_points
    )
    assert ctx.samples == epochs * len(splits["train"])
    assert [c.step for c in ctx.checkpoints] == list(range(1, epochs + 1))
    last = ctx.checkpoints[-1].state
    assert (last["epoch"], last["architecture"], last["method"]) == (
        epochs,
        "causal-lm-small",
        "full",
    )
    assert last["model_config"]["hidden_size"] == task.tiny_params["d_model"]
    assert not model.model.training


def test_a_resumed_run_ends_where_the_uninterrupted_one_did(task, trained, splits):
    full_ctx, full_model = trained
    middle = full_ctx.checkpoints[4]
    ctx = LocalTrainContext(
        task,
        train=splits["train"],
        validation=splits["validation"],
        params=task.tiny_params,
        seed=3,
    )
    ctx._checkpoint = middle
    model = closed(task.train(ctx))
    steps_per_epoch = -(-len(splits["train"]) // task.tiny_params["batch_size"])
    assert (
        min(r[0] for r in ctx.reports if "train_loss" in r[2])
        == middle.state["epoch"] * steps_per_epoch + 1
    )
    assert model.facts == full_model.facts  # the loss before training came back with the checkpoint
    ours, theirs = model.model.state_dict(), full_model.model.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_bad_sizes_and_missing_bases_are_training_errors(task, splits):
    with pytest.raises(TrainingError, match="multiple of num_heads"):
        task.train(
            LocalTrainContext(
                task,
                train=splits["train"],
                validation=splits["validation"],
                params={**task.tiny_params, "d_model": 64, "num_heads": 12},
            )
        )
    with pytest.raises(TrainingError, match="choose a base model"):
        task.train(
            LocalTrainContext(
                task,
                train=splits["train"],
                validation=splits["validation"],
                params=task.tiny_params,
                architecture="causal-lm-finetune",
            )
        )


# --- fine-tuning -----------------------------------------------------------------------------------


def finetune(task, splits, base, **params):
    ctx = LocalTrainContext(
        task,
        train=splits["train"],
        validation=splits["validation"],
        architecture="causal-lm-finetune",
        base=base,
        seed=1,
        params={"epochs": 4, "batch_size": 8, "max_length": 128, **params},
    )
    return ctx, closed(task.train(ctx))


def test_lora_changes_only_the_projections_by_low_rank_merged_updates(
    task, splits, tiny_base, tmp_path
):
    before = state_of(causal_lm.load(tiny_base).model)
    ctx, model = finetune(task, splits, tiny_base, method="lora", lora_rank=4, learning_rate=1e-2)
    after = state_of(model.model)
    assert set(after) == set(before), "the merged model has the base's parameters, no LoRA ones"
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    projections = {name for name in before if name.split(".")[-2] in causal_lm.LORA_TARGETS}
    assert changed == projections
    for name in projections:
        assert torch.linalg.matrix_rank(after[name] - before[name]).item() <= 4
    final = [r[2]["val_loss"] for r in ctx.reports if "val_loss" in r[2]][-1]
    print(f"\nLoRA: validation loss {model.facts['initial_validation_loss']:.3f} -> {final:.3f}")
    assert final <= model.facts["initial_validation_loss"] - FINE_TUNE_DROP
    task.save(model, tmp_path)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "pt") as weights:
        assert not any("lora" in key for key in weights.keys())
    assert (
        json.loads((tmp_path / "config.json").read_text())["verticals_architecture"]
        == "causal-lm-finetune"
    )


def test_full_fine_tune_trains_every_weight(task, splits, tiny_base):
    before = state_of(causal_lm.load(tiny_base).model)
    ctx, model = finetune(task, splits, tiny_base, method="full", learning_rate=3e-3)
    after = state_of(model.model)
    assert all(not torch.equal(before[name], after[name]) for name in before)
    final = [r[2]["val_loss"] for r in ctx.reports if "val_loss" in r[2]][-1]
    print(
        f"\nfull fine-tune: validation loss {model.facts['initial_validation_loss']:.3f} -> {final:.3f}"
    )
    assert final <= model.facts["initial_validation_loss"] - FINE_TUNE_DROP


def test_a_small_parent_continues_from_its_weights(task, splits, saved):
    ctx = LocalTrainContext(
        task,
        train=splits["train"],
        validation=splits["validation"],
        base=saved,
        params={**task.tiny_params, "epochs": 1, "d_model": 128},
    )
    model = closed(task.train(ctx))
    assert (
        model.architecture == "causal-lm-small"
        and model.model.config.hidden_size == task.tiny_params["d_model"]
    )
    parent = causal_lm.load(saved)
    assert model.facts["initial_validation_loss"] == pytest.approx(
        task.evaluate(parent, splits["validation"]).metrics["validation_loss"], rel=1e-5
    )


# --- artifacts -------------------------------------------------------------------------------------


def test_save_writes_a_plain_hugging_face_directory(saved):
    from verticals.registry.archives import check_model_files

    check_model_files(saved, TextGenerationTask.model_files)
    names = {p.name for p in saved.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    } <= names
    config = json.loads((saved / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["model_type"] == "llama"
    assert (config["verticals_task"], config["verticals_architecture"]) == (
        "text-generation",
        "causal-lm-small",
    )
    assert (
        config["verticals_context_length"] == 256
        and "initial_validation_loss" in config["verticals_training"]
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert AutoTokenizer.from_pretrained(str(saved)).chat_template == causal_lm.CHAT_TEMPLATE
    assert AutoModelForCausalLM.from_pretrained(str(saved)).config.vocab_size == 260


def test_save_then_load_generates_exactly_alike(task, trained, saved):
    _, model = trained
    loaded = closed(task.load(saved))
    inputs = [task.decode_input(raw) for raw in task.example_inputs()] + [
        task.decode_input({"messages": [{"role": "user", "content": "Repeat river"}]})
    ]
    options = {"max_tokens": 24, "temperature": 0}
    before = task.predict(model, inputs, options=options)
    after = task.predict(loaded, inputs, options=options)
    loaded.close()
    assert before == after
    for output in after:
        jsonschema.validate(output, task.output_schema)
    assert loaded.eos_token_ids == [2] and loaded.context_length == 256
    print(f"\nlearnt: {after[-1]['generated_text']!r}")
    assert after[-1]["generated_text"] == "river river" and after[-1]["finish_reason"] == "stop"


def test_sampling_with_a_seed_repeats_and_stop_strings_end_the_text(task, trained):
    _, model = trained
    [prompt] = [task.decode_input({"messages": [{"role": "user", "content": "Repeat lemon"}]})]
    sampled = [
        task.predict(model, [prompt], options={"temperature": 1.5, "seed": 42, "max_tokens": 16})[0]
        for _ in range(2)
    ]
    assert sampled[0] == sampled[1]
    [stopped] = task.predict(model, [prompt], options={"temperature": 0, "stop": " "})
    prompt_tokens = len(task.generation_request(model, prompt, {}).prompt_ids)
    assert stopped == {
        "generated_text": "lemon",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len("lemon ")},
    }
    [short] = task.predict(model, [prompt], options={"temperature": 0, "max_tokens": 2})
    assert short["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 2


def test_recognize_reads_configs_only(task, saved, tiny_base, tmp_path):
    assert task.recognize(saved) == ("causal-lm-small", [])
    assert task.recognize(tiny_base) == ("causal-lm-finetune", [])
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertModel"]})
    )
    (bert / "model.safetensors").write_bytes(b"")
    (bert / "tokenizer.json").write_text("{}")
    assert task.recognize(bert) is None
    for missing in ("model.safetensors", "tokenizer.json"):
        partial = tmp_path / f"without-{missing}"
        partial.mkdir()
        for path in tiny_base.iterdir():
            if path.name != missing:
                (partial / path.name).write_bytes(path.read_bytes())
        assert task.recognize(partial) is None
    assert task.recognize(tmp_path / "nothing") is None


# --- inputs and generation requests ----------------------------------------------------------------


def test_decode_input_takes_prompts_messages_and_dataset_rows(task):
    assert task.decode_input("Once upon a time") == {"prompt": "Once upon a time"}
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
        },
    ]
    assert task.decode_input({"messages": messages}) == {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi there"},
        ]
    }
    row = {"messages": [{"role": "user", "content": "Hi"}], "completion": "Hello."}
    assert task.decode_input(row) == {"messages": [{"role": "user", "content": "Hi"}]}
    assert task.decode_input({"prompt": "2+2=", "completion": "4"}) == {"prompt": "2+2="}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "not null"),
        (12345, "not a number"),
        ({"not": "an input"}, "without 'messages'"),
        ("", "empty"),
        ("x" * (MAX_CHARS + 1), f"at most {MAX_CHARS}"),
        ({"messages": []}, "'messages' is empty; send at least one message"),
        ({"messages": "hello"}, "'messages' must be an array"),
        (
            {"messages": [{"role": "robot", "content": "hi"}]},
            "messages[0]: the role 'robot' is not one of",
        ),
        ({"messages": [{"content": "hi"}]}, "messages[0]: 'role' is missing"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0]: 'content' must be a string"),
        ({"messages": [{"role": "user", "content": " "}]}, "messages[0]: 'content' is empty"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]},
            "reads text only",
        ),
        ({"messages": ["hi"]}, "messages[0] must be an object"),
    ],
)
def test_decode_input_says_what_to_fix(task, raw, message):
    with pytest.raises(InputError) as refused:
        task.decode_input(raw)
    assert message in str(refused.value)


def test_prompts_longer_than_the_context_are_refused_with_both_numbers(task, trained):
    _, model = trained
    prompt = task.decode_input("x" * 200)
    with pytest.raises(InputError) as refused:
        task.generation_request(model, prompt, {"max_tokens": 100})
    assert str(refused.value).startswith(
        "The prompt has 200 tokens and max_tokens is 100: 300 in all, over this "
        "model's context of 256 tokens."
    )
    assert task.generation_request(model, prompt, {"max_tokens": 56}).max_new_tokens == 56
    assert (
        task.generation_request(model, prompt, {}).max_new_tokens == 56
    )  # the default shrinks to what is left
    with pytest.raises(
        InputError, match="The prompt has 256 tokens; this model's context holds 256"
    ):
        task.generation_request(model, task.decode_input("x" * 256), {})
    with pytest.raises(InputError, match="over this model's context"):
        task.predict(model, [prompt], options={"max_tokens": 57})


def test_generation_requests_carry_checked_options(task, trained):
    _, model = trained
    request = task.generation_request(
        model,
        {"prompt": "Hi"},
        {"max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "stop": "\n", "seed": 7},
    )
    assert (
        request.max_new_tokens,
        request.temperature,
        request.top_p,
        request.stop,
        request.seed,
    ) == (5, 0.5, 0.9, ["\n"], 7)
    greedy = task.generation_request(model, {"prompt": "Hi"}, None)
    assert (greedy.temperature, greedy.top_p, greedy.stop, greedy.seed) == (
        0.0,
        1.0,
        [],
        None,
    )  # generation_config: greedy
    assert set(generation_options({"stop": ["a", "b"]})) == {"stop"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be an integer of at least 1"),
        ({"max_tokens": True}, "max_tokens must be an integer"),
        ({"temperature": 2.5}, "temperature must be a number from 0 (greedy) to 2"),
        ({"top_p": 0}, "top_p must be a number above 0"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4"),
        ({"stop": [""]}, "stop must be a non-empty string"),
        ({"seed": -1}, "seed must be an integer"),
        (
            {"top_k": 3},
            "Unknown parameter(s) top_k; text generation takes "
            + ", ".join(GENERATION_PARAMS_SCHEMA["properties"]),
        ),
    ],
)
def test_bad_generation_options_are_input_errors(options, message):
    with pytest.raises(InputError) as refused:
        generation_options(options)
    assert message in str(refused.value)


def test_a_template_less_model_refuses_messages(task, trained):
    _, model = trained
    template, model.tokenizer.chat_template = model.tokenizer.chat_template, None
    try:
        with pytest.raises(InputError, match="no chat template; send the prompt as a string"):
            task.generation_request(
                model, task.decode_input({"messages": [{"role": "user", "content": "Hi"}]}), {}
            )
    finally:
        model.tokenizer.chat_template = template


def test_the_engine_is_made_once_per_model_and_closed_with_it(task, tiny_base):
    model = causal_lm.load(tiny_base)
    engine = task.engine(model)
    assert task.engine(model) is engine and engine.max_batch == task.max_batch
    model.close()
    assert task.engine(model) is not engine
    model.close()


def test_evaluation_of_an_empty_split_has_no_metrics(task, trained):
    _, model = trained
    evaluation = task.evaluate(model, DatasetSplit("test", [], [None]))
    assert "validation_loss" not in evaluation.metrics
