"""The sentiment task: training (from scratch and BERT fine-tuning on a tiny random BERT),
checkpoints, evaluation, artifacts, prediction and input decoding. No database, no downloads."""

import json
import sys
from pathlib import Path

import jsonschema
import pytest
import torch

from nlp.plugin import NlpPlugin
from nlp.sentiment import MAX_CHARS, SentimentTask, example_reviews
from nlp.textgen import TextGenerationTask
from verticals.sdk import DatasetSplit, Example, InputError, LocalTrainContext, TrainingError
from verticals.sdk.params import problems, with_defaults

ALLOWED_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".md", ".jinja")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
LABELS = ["negative", "positive"]


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


def uploaded_split(task, directory: Path, name: str, rows: int, seed: int) -> DatasetSplit:
    """Examples read the way core reads an upload: example_dataset's CSV through LabelledText.ingest."""
    path = task.example_dataset(directory / name, rows=rows, seed=seed)
    examples = task.dataset.ingest(path, directory / name)
    return DatasetSplit(name, examples, sorted({e.label for e in examples}))


@pytest.fixture(scope="module")
def task():
    return SentimentTask()


@pytest.fixture(scope="module")
def splits(task, tmp_path_factory):
    root = tmp_path_factory.mktemp("sentiment-data")
    return {
        "train": uploaded_split(task, root, "train", 60, 0),
        "validation": uploaded_split(task, root, "validation", 20, 1),
        "test": uploaded_split(task, root, "test", 60, 2),
    }


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
    return ctx, model


@pytest.fixture(scope="module")
def saved(task, trained, tmp_path_factory):
    directory = tmp_path_factory.mktemp("sentiment-model")
    task.save(trained[1], directory)
    return directory


# --- declarations ---------------------------------------------------------------------------------


def test_plugin_declares_the_sentiment_task(task):
    assert NlpPlugin.name == "nlp" and NlpPlugin.title and NlpPlugin.description
    assert list(NlpPlugin.tasks) == [SentimentTask, TextGenerationTask]
    assert (task.name, task.domain, task.playground, task.primary_metric) == (
        "sentiment",
        "nlp",
        "text",
        "accuracy",
    )
    assert tuple(task.metrics) == ("accuracy", "macro_f1")
    assert set(task.optimizations) == {"quantize", "prune", "distill"}
    assert task.meters == {"inference.requests": 1.0}
    assert [a.name for a in task.architectures] == ["transformer-small", "bert-finetune"]
    assert task.default_architecture == "transformer-small"
    bert = task.architecture("bert-finetune")
    assert bert.families == ("bert",) and bert.requires_base
    assert task.architectures_for("bert") == [bert]


def test_schemas_are_valid_and_every_param_has_a_default(task):
    for schema in (task.params_schema, task.input_schema, task.output_schema):
        jsonschema.Draft202012Validator.check_schema(schema)
    assert task.params_schema["additionalProperties"] is False
    for name, spec in task.params_schema["properties"].items():
        assert "default" in spec, name
    defaults = with_defaults(task.params_schema, {})
    assert problems(task.params_schema, defaults) == []
    assert problems(task.params_schema, with_defaults(task.params_schema, task.tiny_params)) == []
    assert problems(task.params_schema, {"epochs": 0}) and problems(
        task.params_schema, {"colour": "red"}
    )
    assert problems(task.params_schema, {"d_model": 130})
    assert defaults["learning_rate"] is None and defaults["epochs"] is None
    assert task.input_schema["type"] == "string" and task.input_schema["maxLength"] == MAX_CHARS
    for value in task.example_inputs():
        jsonschema.validate(value, task.input_schema)


def test_importing_the_plugin_loads_no_torch():
    import subprocess

    code = (
        "import sys; import nlp.plugin, nlp.sentiment; "
        "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_example_dataset_is_balanced_seeded_and_ingestible(task, tmp_path):
    path = task.example_dataset(tmp_path, rows=60, seed=4)
    examples = task.dataset.ingest(path, tmp_path)
    assert len(examples) == 60
    assert sum(e.label == "positive" for e in examples) == 30
    assert [(e.input, e.label) for e in examples] == example_reviews(60, 4)
    assert example_reviews(60, 4) != example_reviews(60, 5)


# --- training ---------------------------------------------------------------------------------------


def test_transformer_small_beats_chance_on_held_out_rows(task, trained, splits):
    _, model = trained
    evaluation = task.evaluate(model, splits["test"])
    assert evaluation.metrics["accuracy"] >= 0.8, evaluation.metrics
    assert 0 <= evaluation.metrics["macro_f1"] <= 1
    assert evaluation.report["labels"] == LABELS
    assert evaluation.report["examples"] == 60


def test_training_reports_counts_and_checkpoints_each_epoch(task, trained, splits):
    ctx, model = trained
    epochs = task.tiny_params["epochs"]
    steps_per_epoch = -(-len(splits["train"]) // task.tiny_params["batch_size"])
    losses = [r for r in ctx.reports if "train_loss" in r[2]]
    assert len(losses) == epochs * steps_per_epoch
    assert [r[0] for r in losses] == list(range(1, epochs * steps_per_epoch + 1))
    assert all(r[1] == epochs * steps_per_epoch for r in ctx.reports)
    validations = [r[2] for r in ctx.reports if "val_accuracy" in r[2]]
    assert len(validations) == epochs and all("val_loss" in m for m in validations)
    assert validations[-1]["val_accuracy"] >= 0.8
    assert ctx.samples == epochs * len(splits["train"])
    assert [c.step for c in ctx.checkpoints] == list(range(1, epochs + 1))
    last = ctx.checkpoints[-1]
    assert last.state["epoch"] == epochs and last.state["labels"] == LABELS
    assert any(k.startswith("model.") for k in last.tensors) and any(
        k.startswith("optim.") for k in last.tensors
    )
    assert all(isinstance(v, torch.Tensor) for v in last.tensors.values())
    assert not model.module.training


def test_a_resumed_run_ends_where_the_uninterrupted_one_did(task, trained, splits):
    full_ctx, full_model = trained
    middle = full_ctx.checkpoints[4]
    ctx = RecordingContext(
        task,
        train=splits["train"],
        validation=splits["validation"],
        params=task.tiny_params,
        seed=3,
    )
    ctx._checkpoint = middle
    model = task.train(ctx)
    steps_per_epoch = -(-len(splits["train"]) // task.tiny_params["batch_size"])
    first_step = min(r[0] for r in ctx.reports if "train_loss" in r[2])
    assert first_step == middle.state["epoch"] * steps_per_epoch + 1
    assert ctx.samples == (task.tiny_params["epochs"] - middle.state["epoch"]) * len(
        splits["train"]
    )
    texts = splits["test"].inputs
    assert task.predict(model, texts) == task.predict(full_model, texts)


def test_a_finished_checkpoint_trains_no_more(task, trained, splits):
    full_ctx, full_model = trained
    ctx = LocalTrainContext(
        task,
        train=splits["train"],
        validation=splits["validation"],
        params=task.tiny_params,
        seed=3,
    )
    ctx._checkpoint = full_ctx.checkpoints[-1]
    model = task.train(ctx)
    assert ctx.samples == 0 and not ctx.reports
    assert task.predict(model, task.example_inputs()) == task.predict(
        full_model, task.example_inputs()
    )


def test_training_is_deterministic_for_a_seed(task, splits):
    params = {**task.tiny_params, "epochs": 2}
    outputs = []
    for _ in range(2):
        ctx = LocalTrainContext(
            task, train=splits["train"], validation=splits["validation"], params=params, seed=11
        )
        outputs.append(task.predict(task.train(ctx), task.example_inputs()))
    assert outputs[0] == outputs[1]


def test_empty_validation_is_skipped(task, splits):
    empty = DatasetSplit("validation", [], LABELS)
    ctx = LocalTrainContext(
        task, train=splits["train"], validation=empty, params={**task.tiny_params, "epochs": 1}
    )
    task.train(ctx)
    assert ctx.reports and not any("val_accuracy" in r[2] for r in ctx.reports)


def test_a_diverging_loss_raises_a_training_error(task, splits, monkeypatch):
    from nlp import text_models

    monkeypatch.setattr(
        text_models.TinyEncoder,
        "forward",
        lambda self, ids, mask: (
            self.head.weight.sum() * float("nan") + torch.zeros(ids.shape[0], 2)
        ),
    )
    ctx = LocalTrainContext(
        task, train=splits["train"], validation=splits["validation"], params=task.tiny_params
    )
    with pytest.raises(TrainingError, match="learning_rate"):
        task.train(ctx)


def test_bert_finetune_needs_a_base(task, splits):
    ctx = LocalTrainContext(
        task,
        train=splits["train"],
        validation=splits["validation"],
        params=task.tiny_params,
        architecture="bert-finetune",
    )
    with pytest.raises(TrainingError, match="base model"):
        task.train(ctx)


# --- evaluation ------------------------------------------------------------------------------------


def test_evaluation_counts_labels_the_model_does_not_know_as_wrong(task, trained, splits):
    _, model = trained
    known = splits["test"].examples[:20]
    extra = [
        Example("It is fine I guess.", "neutral"),
        Example("Nothing special either way.", "neutral"),
    ]
    split = DatasetSplit("test", known + extra, ["negative", "neutral", "positive"])
    evaluation = task.evaluate(model, split)
    on_known = task.evaluate(model, DatasetSplit("test", known, LABELS)).metrics["accuracy"]
    assert evaluation.report["labels"] == ["negative", "neutral", "positive"]
    assert evaluation.metrics["accuracy"] == pytest.approx(on_known * 20 / 22)
    assert evaluation.report["per_class"]["neutral"]["recall"] == 0.0
    subset = DatasetSplit("test", [e for e in known if e.label == "positive"], ["positive"])
    assert task.evaluate(model, subset).report["labels"] == ["positive", "negative"]


# --- artifacts ---------------------------------------------------------------------------------------


def test_save_writes_safetensors_json_and_tokenizer_only(saved):
    names = sorted(p.name for p in saved.iterdir())
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(names)
    assert all(name.endswith(ALLOWED_SUFFIXES) for name in names), names
    assert not any(name.endswith(PICKLE_SUFFIXES) for name in names)
    config = json.loads((saved / "config.json").read_text())
    assert config["verticals_architecture"] == "transformer-small"
    assert config["verticals_labels"] == LABELS
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_save_then_load_predicts_exactly_alike(task, trained, saved):
    _, model = trained
    loaded = task.load(saved)
    assert not loaded.module.training and loaded.labels == LABELS
    texts = task.example_inputs() + ["x", "Great! " * 200]
    assert task.predict(loaded, texts) == task.predict(model, texts)
    assert task.recognize(saved) == ("transformer-small", LABELS)


def test_predictions_follow_the_output_schema(task, trained):
    _, model = trained
    outputs = task.predict(model, task.example_inputs())
    assert len(outputs) == len(task.example_inputs())
    for output in outputs:
        jsonschema.validate(output, task.output_schema)
        scores = [item["score"] for item in output]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)
        assert {item["label"] for item in output} == set(LABELS)
    assert outputs[0][0]["label"] == "positive" and outputs[1][0]["label"] == "negative"
    top = task.predict(model, task.example_inputs(), options={"top_k": 1})
    assert [len(o) for o in top] == [1, 1, 1] and [o[0] for o in top] == [o[0] for o in outputs]
    assert task.predict(model, []) == []
    for bad in (0, -1, "2", True, 1.5):
        with pytest.raises(InputError):
            task.predict(model, ["fine"], options={"top_k": bad})


def test_a_long_batch_is_truncated_and_padded(task, trained):
    _, model = trained
    texts = ["good " * 500, "bad"] * (task.max_batch // 2 + 3)
    outputs = task.predict(model, texts)
    assert len(outputs) == len(texts)
    batch = model.encode(texts[:2])
    assert batch["input_ids"].shape == (2, model.max_length)


def test_decode_input_refuses_what_it_cannot_use(task):
    assert task.decode_input("Lovely") == "Lovely"
    for bad in (None, 3, ["text"], {"text": "hi"}, b"bytes", "", "   \n", "x" * (MAX_CHARS + 1)):
        with pytest.raises(InputError):
            task.decode_input(bad)


# --- recognizing imported directories ------------------------------------------------------------------


def _hf_dir(root: Path, config: dict, *files: str) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps(config))
    for name in files:
        (root / name).write_text("{}")
    return root


def test_recognize_reads_hugging_face_configs(task, tmp_path):
    base = _hf_dir(
        tmp_path / "base",
        {"model_type": "bert", "architectures": ["BertModel"]},
        "model.safetensors",
        "tokenizer.json",
    )
    assert task.recognize(base) == ("bert-finetune", [])
    head = _hf_dir(
        tmp_path / "head",
        {
            "model_type": "bert",
            "architectures": ["BertForSequenceClassification"],
            "id2label": {"1": "POSITIVE", "0": "NEGATIVE"},
        },
        "model.safetensors",
        "vocab.txt",
    )
    assert task.recognize(head) == ("bert-finetune", ["NEGATIVE", "POSITIVE"])
    pickled = _hf_dir(
        tmp_path / "pickled",
        {"model_type": "bert", "architectures": ["BertModel"]},
        "pytorch_model.bin",
        "tokenizer.json",
    )
    assert task.recognize(pickled) is None
    no_tokenizer = _hf_dir(tmp_path / "no-tokenizer", {"model_type": "bert"}, "model.safetensors")
    assert task.recognize(no_tokenizer) is None
    other = _hf_dir(
        tmp_path / "gpt2", {"model_type": "gpt2"}, "model.safetensors", "tokenizer.json"
    )
    assert task.recognize(other) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert task.recognize(empty) is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert task.recognize(broken) is None


def test_recognize_accepts_minilm_as_a_headless_bert(task, minilm_dir):
    assert task.recognize(minilm_dir) == ("bert-finetune", [])


# --- bert-finetune on a tiny random BERT (no pretrained weights needed) -----------------------------------


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random 2-layer BERT with a WordPiece tokenizer, saved as a Hugging Face base model directory."""
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    from nlp.text_models import train_tokenizer

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = train_tokenizer([text for text, _ in example_reviews(200, 9)], 400)
    tokenizer.add_special_tokens(["[MASK]"])
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_bert_trained(task, splits, tiny_bert, tmp_path_factory):
    params = {"epochs": 2, "batch_size": 16, "max_length": 32, "learning_rate": 1e-3}
    ctx = RecordingContext(
        task,
        train=splits["train"],
        validation=splits["validation"],
        params=params,
        architecture="bert-finetune",
        base=tiny_bert,
        seed=1,
    )
    model = task.train(ctx)
    directory = tmp_path_factory.mktemp("tiny-bert-sentiment")
    task.save(model, directory)
    return ctx, model, directory


def test_bert_finetune_trains_saves_and_loads_alike(task, tiny_bert_trained):
    ctx, model, directory = tiny_bert_trained
    assert len(ctx.checkpoints) == 2 and any("val_accuracy" in r[2] for r in ctx.reports)
    names = sorted(p.name for p in directory.iterdir())
    assert "model.safetensors" in names and "tokenizer.json" in names
    assert all(name.endswith(ALLOWED_SUFFIXES) for name in names), names
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "bert" and config["verticals_architecture"] == "bert-finetune"
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["label2id"] == {
        "negative": 0,
        "positive": 1,
    }
    assert task.recognize(directory) == ("bert-finetune", LABELS)
    loaded = task.load(directory)
    assert not loaded.module.training and loaded.labels == LABELS and loaded.max_length == 32
    texts = task.example_inputs() + ["short", "long " * 300]
    assert task.predict(loaded, texts) == task.predict(model, texts)
    for output in task.predict(loaded, texts, options={"top_k": 2}):
        jsonschema.validate(output, task.output_schema)


def test_bert_finetune_resumes_from_its_checkpoint(task, splits, tiny_bert, tiny_bert_trained):
    full_ctx, full_model, _ = tiny_bert_trained
    params = {"epochs": 2, "batch_size": 16, "max_length": 32, "learning_rate": 1e-3}
    ctx = LocalTrainContext(
        task,
        train=splits["train"],
        validation=splits["validation"],
        params=params,
        architecture="bert-finetune",
        base=tiny_bert,
        seed=1,
    )
    ctx._checkpoint = full_ctx.checkpoints[0]
    model = task.train(ctx)
    assert ctx.samples == len(splits["train"])
    assert task.predict(model, task.example_inputs()) == task.predict(
        full_model, task.example_inputs()
    )


def test_a_plain_base_directory_loads_with_a_seeded_head(task, tiny_bert):
    first, second = task.load(tiny_bert), task.load(tiny_bert)
    assert first.labels == ["LABEL_0", "LABEL_1"]
    assert task.predict(first, ["good"]) == task.predict(second, ["good"])


def _head(model):
    return model.module.classifier.weight.detach().clone()


def test_a_parent_keeps_its_head_only_for_the_same_labels(task, tiny_bert_trained):
    from nlp import text_models

    _, parent, directory = tiny_bert_trained
    same = LocalTrainContext(
        task,
        train=DatasetSplit("train", [Example("ok", "positive")], LABELS),
        validation=DatasetSplit("validation", [], LABELS),
        architecture="bert-finetune",
        base=directory,
        base_labels=LABELS,
    )
    kept = text_models._build_bert(same, same.params, LABELS)
    assert torch.equal(_head(kept), _head(parent).cpu())
    others = ["bad", "good"]
    other = LocalTrainContext(
        task,
        train=DatasetSplit("train", [Example("ok", "good")], others),
        validation=DatasetSplit("validation", [], others),
        architecture="bert-finetune",
        base=directory,
        base_labels=LABELS,
    )
    fresh = text_models._build_bert(other, other.params, others)
    assert fresh.module.config.id2label == {0: "bad", 1: "good"}
    assert not torch.equal(_head(fresh), _head(parent).cpu())
    three = ["negative", "neutral", "positive"]
    wider = LocalTrainContext(
        task,
        train=DatasetSplit("train", [Example("ok", "neutral")], three),
        validation=DatasetSplit("validation", [], three),
        architecture="bert-finetune",
        base=directory,
        base_labels=LABELS,
    )
    assert _head(text_models._build_bert(wider, wider.params, three)).shape[0] == 3


def test_a_transformer_small_parent_continues_with_its_vocabulary_and_head(
    task, trained, saved, splits
):
    from nlp import text_models

    _, parent = trained
    params = {
        **task.tiny_params,
        "epochs": 1,
        "vocab_size": 100,
        "d_model": 32,
    }  # size params do not apply to a parent
    same = LocalTrainContext(
        task,
        train=splits["train"],
        validation=splits["validation"],
        params=params,
        base=saved,
        base_labels=LABELS,
    )
    kept = text_models._build_small(same, same.params, LABELS, [], None)
    assert kept.config == parent.config and kept.tokenizer.to_str() == parent.tokenizer.to_str()
    assert all(
        torch.equal(v, parent.module.state_dict()[k]) for k, v in kept.module.state_dict().items()
    )
    continued = task.train(same)
    assert task.evaluate(continued, splits["test"]).metrics["accuracy"] >= 0.8
    three = ["negative", "neutral", "positive"]
    wider = LocalTrainContext(
        task,
        train=DatasetSplit("train", [Example("meh", "neutral")], three),
        validation=DatasetSplit("validation", [], three),
        params=params,
        base=saved,
        base_labels=LABELS,
    )
    fresh = text_models._build_small(wider, wider.params, three, [], None)
    assert fresh.module.head.weight.shape[0] == 3
    assert torch.equal(fresh.module.tokens.weight, parent.module.tokens.weight)
