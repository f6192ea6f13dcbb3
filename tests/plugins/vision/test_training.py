"""Training image classifiers through LocalTrainContext: learning, reports, checkpoints, resuming."""

from __future__ import annotations

import math

import pytest
import torch

from tests.plugins.vision.helpers import split, train_tiny
from verticals.sdk import DatasetSplit, LocalTrainContext, TrainingError

CHANCE = 1 / 3  # three shapes


def steps_per_epoch(n: int, batch_size: int) -> int:
    steps = math.ceil(n / batch_size)
    return steps - 1 if steps > 1 and n % batch_size == 1 else steps


def test_default_architecture_learns_and_reports(task, shapes, trained):
    ctx, model = trained
    assert ctx.architecture == task.default_architecture == "resnet18"
    evaluation = task.evaluate(model, shapes["test"])
    assert set(evaluation.metrics) == set(task.metrics)
    assert evaluation.metrics["accuracy"] > CHANCE + 0.1, evaluation.metrics
    assert evaluation.report["confusion_matrix"] and evaluation.report["examples"] == len(
        shapes["test"]
    )

    epochs, batch = ctx.params["epochs"], ctx.params["batch_size"]
    total = epochs * steps_per_epoch(len(shapes["train"]), batch)
    losses = [
        (step, metrics["train_loss"]) for step, _, metrics in ctx.reports if "train_loss" in metrics
    ]
    assert [step for step, _ in losses] == list(range(1, total + 1))
    assert all(t == total for _, t, m in ctx.reports)
    assert all(math.isfinite(value) for _, value in losses)
    validation = [m for _, _, m in ctx.reports if "val_accuracy" in m]
    assert len(validation) == epochs and all(
        {"val_loss", "val_accuracy"} <= set(m) for m in validation
    )
    assert ctx.samples == epochs * len(shapes["train"])

    checkpoint = ctx.restore()
    assert checkpoint.step == epochs and checkpoint.state["epoch"] == epochs
    assert checkpoint.state["labels"] == ["circle", "square", "triangle"]
    assert any(key.startswith("optimizer.") for key in checkpoint.tensors)
    assert torch.equal(checkpoint.tensors["model.fc.weight"], model.network.fc.weight.detach())
    assert not model.training


def test_mobilenet_v3_small_learns(task, shapes):
    _, model = train_tiny(task, shapes, "mobilenet_v3_small")
    accuracy = task.evaluate(model, shapes["test"]).metrics["accuracy"]
    print(f"mobilenet_v3_small tiny: held-out accuracy {accuracy:.3f}")
    assert accuracy > CHANCE + 0.1
    # torchvision builds it with batch-norm momentum 0.01; the task trains it with 0.1.
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_simple_cnn_learns(task, shapes):
    _, model = train_tiny(task, shapes, "simple-cnn")
    assert task.evaluate(model, shapes["test"]).metrics["accuracy"] > 0.6


class Interrupted(Exception):
    pass


class LostWorker(LocalTrainContext):
    """Stops the run right after the checkpoint of epoch `stop_after` (as a lost worker would)."""

    def __init__(self, *args, stop_after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop_after = stop_after

    def checkpoint(self, step, tensors, state=None):
        super().checkpoint(step, tensors, state)
        if step == self.stop_after:
            raise Interrupted


class Rerun(LocalTrainContext):
    """A rerun of the job: restore() gives the checkpoint the lost run left."""

    def __init__(self, *args, left, **kwargs):
        super().__init__(*args, **kwargs)
        self.left = left

    def restore(self):
        return self.left


def test_rerun_resumes_from_the_checkpoint_exactly(task, shapes):
    params = {**task.tiny_params, "epochs": 3, "crop_scale": 0.7, "horizontal_flip": True}
    common = {
        "train": shapes["train"],
        "validation": shapes["validation"],
        "params": params,
        "architecture": "simple-cnn",
        "seed": 5,
    }
    straight = LocalTrainContext(task, **common)
    whole = task.train(straight)

    lost = LostWorker(task, **common, stop_after=1)
    with pytest.raises(Interrupted):
        task.train(lost)
    assert lost.restore().state["epoch"] == 1

    rerun = Rerun(task, **common, left=lost.restore())
    resumed = task.train(rerun)
    per_epoch = steps_per_epoch(len(shapes["train"]), params["batch_size"])
    assert (
        min(step for step, _, _ in rerun.reports) == per_epoch + 1
    )  # epoch 1 was not trained again
    assert rerun.samples == 2 * len(shapes["train"])
    assert any("Resuming after epoch 1" in line for line in rerun.lines)
    for (key, a), (_, b) in zip(
        whole.state_dict().items(), resumed.state_dict().items(), strict=False
    ):
        assert torch.equal(a, b), key  # same seed, same data: identical to the uninterrupted run


def test_a_checkpoint_of_another_run_is_ignored(task, shapes):
    common = {
        "train": shapes["train"],
        "validation": shapes["validation"],
        "architecture": "simple-cnn",
    }
    first = LocalTrainContext(
        task, **common, params={**task.tiny_params, "epochs": 1, "image_size": 32}
    )
    task.train(first)
    rerun = Rerun(task, **common, params={**task.tiny_params, "epochs": 1}, left=first.restore())
    task.train(rerun)
    assert any("starting over" in line for line in rerun.lines)
    assert rerun.samples == len(shapes["train"])


def test_training_without_validation(task, shapes):
    empty = DatasetSplit("validation", [], shapes["train"].labels)
    ctx = LocalTrainContext(
        task,
        train=shapes["train"],
        validation=empty,
        params={**task.tiny_params, "epochs": 1},
        architecture="simple-cnn",
    )
    task.train(ctx)
    assert not [m for _, _, m in ctx.reports if "val_loss" in m]
    assert ctx.restore().state["epoch"] == 1


def test_diverging_training_fails_with_a_message(task, shapes, monkeypatch):
    from vision import training

    class NanLoss(torch.nn.CrossEntropyLoss):
        def forward(self, logits, target):
            return super().forward(logits, target) * float("nan")

    monkeypatch.setattr(training.nn, "CrossEntropyLoss", NanLoss)
    ctx = LocalTrainContext(
        task,
        train=shapes["train"],
        validation=shapes["validation"],
        params=task.tiny_params,
        architecture="simple-cnn",
    )
    with pytest.raises(TrainingError, match="diverged"):
        task.train(ctx)


def test_too_few_images(task, shapes):
    one = split("train", shapes["train"].examples[:1], shapes["train"].labels)
    ctx = LocalTrainContext(
        task, train=one, validation=shapes["validation"], params=task.tiny_params
    )
    with pytest.raises(TrainingError, match="at least 2"):
        task.train(ctx)
