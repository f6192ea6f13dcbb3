"""Saving, loading, predicting, recognizing imported torchvision directories, and fine-tuning."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
import torchvision
from PIL import Image

from tests.plugins.vision.helpers import split
from verticals.sdk import InputError, LocalTrainContext, TrainingError, save_weights, write_config
from vision.networks import IMAGENET_MEAN, IMAGENET_STD


def held_out_images(shapes, n=12):
    from vision.networks import open_rgb

    return [open_rgb(example.input, 64) for example in shapes["test"].examples[:n]]


def test_save_holds_only_weights_and_config(task, trained, tmp_path):
    _, model = trained
    task.save(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "resnet18"
    assert config["labels"] == ["circle", "square", "triangle"] and config["num_classes"] == 3
    assert config["image_size"] == task.tiny_params["image_size"]
    assert len(config["mean"]) == len(config["std"]) == 3 and min(config["std"]) > 0
    assert (tmp_path / "model.safetensors").read_bytes()[
        8:9
    ] == b"{"  # a safetensors header, not a pickle


def test_load_reproduces_predictions_exactly(task, trained, shapes, tmp_path):
    _, model = trained
    images = held_out_images(shapes)
    before = task.predict(model, images)
    task.save(model, tmp_path)
    loaded = task.load(tmp_path)
    assert not loaded.training and loaded.labels == model.labels
    assert task.predict(loaded, images) == before  # the same floats, not just close ones
    assert (
        task.evaluate(loaded, shapes["test"]).metrics
        == task.evaluate(model, shapes["test"]).metrics
    )


def test_predictions_match_the_output_schema(task, trained, shapes):
    _, model = trained
    outputs = task.predict(model, held_out_images(shapes, 4))
    assert len(outputs) == 4
    for output in outputs:
        jsonschema.Draft202012Validator(task.output_schema).validate(output)
        scores = [item["score"] for item in output]
        assert scores == sorted(scores, reverse=True)
        assert len(output) == 3  # top 5 by default, and there are 3 labels
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)


def test_top_k(task, trained, shapes):
    _, model = trained
    images = held_out_images(shapes, 3)
    full = task.predict(model, images)
    top1 = task.predict(model, images, options={"top_k": 1})
    assert [len(o) for o in top1] == [1, 1, 1]
    assert [o[0] for o in top1] == [o[0] for o in full]
    assert [len(o) for o in task.predict(model, images, options={"top_k": 2})] == [2, 2, 2]
    for bad in (0, -1, "3", True, 1.5):
        with pytest.raises(InputError, match="top_k"):
            task.predict(model, images, options={"top_k": bad})


def test_predict_takes_what_clients_send(task, trained):
    _, model = trained
    inputs = task.example_inputs()
    decoded = [task.decode_input(raw) for raw in inputs]
    assert task.predict(model, inputs) == task.predict(model, decoded)
    assert task.predict(model, []) == []


def test_recognize_a_saved_model(task, trained, tmp_path):
    _, model = trained
    task.save(model, tmp_path)
    assert task.recognize(tmp_path) == ("resnet18", ["circle", "square", "triangle"])


def torchvision_dir(path, network, config):
    save_weights(network.state_dict(), path)
    write_config(path, config)
    return path


def test_recognize_an_imported_torchvision_resnet18(task, tmp_path):
    directory = torchvision_dir(
        tmp_path,
        torchvision.models.resnet18(weights=None),
        {"architecture": "resnet18", "num_classes": 1000},
    )
    architecture, labels = task.recognize(directory)
    assert architecture == "resnet18"
    assert labels == [str(i) for i in range(1000)]  # no names given: the class indexes
    model = task.load(directory)
    assert (
        model.image_size == 224
        and model.mean == list(IMAGENET_MEAN)
        and model.std == list(IMAGENET_STD)
    )
    output = task.predict(model, [Image.new("RGB", (40, 30), "red")], options={"top_k": 3})[0]
    assert len(output) == 3 and all(item["label"].isdigit() for item in output)


def test_recognize_other_torchvision_layouts(task, tmp_path):
    mobilenet = torchvision_dir(
        tmp_path / "mobilenet",
        torchvision.models.mobilenet_v3_small(weights=None, num_classes=4),
        {"architecture": "mobilenet_v3_small", "labels": ["a", "b", "c", "d"]},
    )
    assert task.recognize(mobilenet) == ("mobilenet_v3_small", ["a", "b", "c", "d"])

    state = torchvision.models.resnet18(weights=None).state_dict()
    headless = {k: v for k, v in state.items() if not k.startswith("fc.")}
    save_weights(headless, tmp_path / "headless")
    write_config(tmp_path / "headless", {"architecture": "resnet18"})
    assert task.recognize(tmp_path / "headless") == ("resnet18", [])
    with pytest.raises(ValueError, match="no classifier head"):
        task.load(tmp_path / "headless")


@pytest.mark.parametrize(
    "case",
    [
        "unknown architecture",
        "weights of another architecture",
        "no config",
        "no weights",
        "a pickle",
        "labels that do not fit the head",
        "not safetensors",
    ],
)
def test_recognize_refuses(task, tmp_path, case):
    resnet = torchvision.models.resnet18(weights=None, num_classes=3)
    if case == "unknown architecture":
        torchvision_dir(tmp_path, resnet, {"architecture": "vit_b_16", "num_classes": 3})
    elif case == "weights of another architecture":
        torchvision_dir(
            tmp_path,
            torchvision.models.mobilenet_v3_small(weights=None, num_classes=3),
            {"architecture": "resnet18", "num_classes": 3},
        )
    elif case == "no config":
        save_weights(resnet.state_dict(), tmp_path)
    elif case == "no weights":
        write_config(tmp_path, {"architecture": "resnet18", "num_classes": 3})
    elif case == "a pickle":
        torch.save(resnet.state_dict(), tmp_path / "model.pth")
        write_config(tmp_path, {"architecture": "resnet18", "num_classes": 3})
    elif case == "labels that do not fit the head":
        torchvision_dir(tmp_path, resnet, {"architecture": "resnet18", "labels": ["a", "b"]})
    elif case == "not safetensors":
        write_config(tmp_path, {"architecture": "resnet18", "num_classes": 3})
        (tmp_path / "model.safetensors").write_bytes(b"\xff" * 64)
    assert task.recognize(tmp_path) is None
    with pytest.raises(ValueError):
        task.load(tmp_path)


def fine_tune(
    task,
    shapes,
    base,
    *,
    base_labels=(),
    train=None,
    validation=None,
    architecture="resnet18",
    **params,
):
    train = train or shapes["train"]
    # A learning rate of 1e-12 leaves the weights where the base put them: what they started from shows.
    ctx = LocalTrainContext(
        task,
        train=train,
        validation=validation or shapes["validation"],
        architecture=architecture,
        base=base,
        base_labels=base_labels,
        params={**task.tiny_params, "epochs": 1, **params},
    )
    return ctx, task.train(ctx)


def test_fine_tune_an_imported_base_with_other_labels(task, shapes, tmp_path):
    base = torchvision.models.resnet18(weights=None)
    directory = torchvision_dir(tmp_path, base, {"architecture": "resnet18", "num_classes": 1000})
    ctx, model = fine_tune(task, shapes, directory, learning_rate=1e-12)
    assert model.labels == ["circle", "square", "triangle"] and model.network.fc.out_features == 3
    assert torch.allclose(model.network.conv1.weight, base.conv1.weight, atol=1e-6)
    assert torch.allclose(
        model.network.layer4[1].conv2.weight, base.layer4[1].conv2.weight, atol=1e-6
    )
    assert model.mean == list(IMAGENET_MEAN)  # the imported base gives no statistics: ImageNet's
    assert any("head was replaced (0 of 3" in line for line in ctx.lines)

    ctx, model = fine_tune(task, shapes, directory, epochs=3)  # and it learns
    assert task.evaluate(model, shapes["test"]).metrics["accuracy"] > 0.4


def test_fine_tune_a_parent_version(task, trained, shapes, tmp_path):
    _, parent = trained
    task.save(parent, tmp_path)
    parent_labels = ["circle", "square", "triangle"]

    _, same = fine_tune(task, shapes, tmp_path, base_labels=parent_labels, learning_rate=1e-12)
    assert torch.allclose(
        same.network.fc.weight, parent.network.fc.weight, atol=1e-6
    )  # the head is kept
    assert same.mean == parent.mean and same.std == parent.std  # the parent's normalization

    two = {
        name: split(name, [e for e in shapes[name].examples if e.label != "triangle"])
        for name in ("train", "validation", "test")
    }
    ctx, fewer = fine_tune(
        task,
        shapes,
        tmp_path,
        base_labels=parent_labels,
        train=two["train"],
        validation=two["validation"],
        learning_rate=1e-12,
    )
    assert fewer.labels == ["circle", "square"]
    assert torch.allclose(
        fewer.network.fc.weight, parent.network.fc.weight[:2], atol=1e-6
    )  # shared rows carried
    assert any("2 of 2 labels carried over" in line for line in ctx.lines)

    # The parent (three labels) evaluated on the two-label split: its triangle column still counts.
    evaluation = task.evaluate(parent, two["test"])
    assert evaluation.report["labels"] == ["circle", "square", "triangle"]
    assert sum(map(sum, evaluation.report["confusion_matrix"])) == len(two["test"])


def test_an_unnamed_head_is_never_matched_by_index(task, shapes, tmp_path):
    """An imported model's classes "0", "1", "2" are not a dataset's labels "0", "1", "2"."""
    from verticals.sdk import Example
    from vision.networks import SimpleCNN

    torch.manual_seed(1234)  # not the seed training starts its new head from
    base = SimpleCNN(3)
    directory = torchvision_dir(tmp_path, base, {"architecture": "simple-cnn", "num_classes": 3})
    assert task.recognize(directory) == ("simple-cnn", ["0", "1", "2"])
    renamed = {
        name: split(
            name,
            [
                Example(e.input, str(shapes[name].labels.index(e.label)))
                for e in shapes[name].examples
            ],
        )
        for name in ("train", "validation")
    }
    ctx, model = fine_tune(
        task,
        shapes,
        directory,
        architecture="simple-cnn",
        train=renamed["train"],
        validation=renamed["validation"],
        learning_rate=1e-12,
    )
    assert model.labels == ["0", "1", "2"]
    assert torch.allclose(model.network.features[0].weight, base.features[0].weight, atol=1e-6)
    assert not torch.allclose(model.network.head.weight, base.head.weight, atol=1e-3)
    assert any("head was replaced (0 of 3" in line for line in ctx.lines)


def test_a_base_of_another_architecture_is_refused(task, shapes, tmp_path):
    directory = torchvision_dir(
        tmp_path,
        torchvision.models.mobilenet_v3_small(weights=None),
        {"architecture": "mobilenet_v3_small", "num_classes": 1000},
    )
    with pytest.raises(TrainingError, match="mobilenet_v3_small"):
        fine_tune(task, shapes, directory, architecture="resnet18")
