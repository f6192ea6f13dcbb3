"""The conformance suite's own checks fail for a plugin that breaks them."""

from __future__ import annotations

import pytest

from verticals.sdk import CLASSIFICATION_OUTPUT, Architecture, LabelledText, Task
from verticals.sdk.testing.conformance import check_alone_as_in_batch, same_output


class EchoTask(Task):
    """A tiny task whose 'model' answers each text with a fixed label and score."""

    name = "echo"
    domain = "test"
    title = "Echo"
    dataset = LabelledText()
    architectures = (Architecture("none", "None"),)
    default_architecture = "none"
    output_schema = CLASSIFICATION_OUTPUT
    metrics = ("accuracy",)
    primary_metric = "accuracy"

    def predict(self, model, inputs, *, options=None):
        return [[{"label": "long" if len(text) > 3 else "short", "score": 0.75}] for text in inputs]

    def example_inputs(self):
        return ["a", "a longer text", "bc"]


class BatchDependentTask(EchoTask):
    """Breaks the contract: its score depends on how many inputs share the batch."""

    name = "batch-dependent"

    def predict(self, model, inputs, *, options=None):
        return [[{**out[0], "score": 1 / len(inputs)}] for out in super().predict(model, inputs)]


class ShiftedTask(EchoTask):
    """Breaks it too: each input is answered with its neighbour's output."""

    name = "shifted"

    def predict(self, model, inputs, *, options=None):
        outputs = super().predict(model, inputs)
        return outputs[1:] + outputs[:1]


def run_check(task: Task) -> None:
    raw = task.example_inputs()
    check_alone_as_in_batch(lambda inputs: task.predict(None, inputs), raw, task.predict(None, raw))


def test_a_task_that_answers_alone_as_in_a_batch_passes():
    run_check(EchoTask())


@pytest.mark.parametrize("task", [BatchDependentTask(), ShiftedTask()], ids=lambda t: t.name)
def test_a_task_whose_answers_depend_on_the_batch_fails(task):
    raw = task.example_inputs()
    batched = task.predict(None, raw)
    # The check this replaces, `alone == batched[:1] or len(raw) > 1`, passed for every task
    # with more than one example input:
    assert task.predict(None, raw[:1]) == batched[:1] or len(raw) > 1
    with pytest.raises(AssertionError, match="must not depend on the rest of its batch"):
        run_check(task)


def test_outputs_compare_numbers_within_rounding_and_everything_else_exactly():
    a = [{"label": "x", "score": 0.5}, {"label": "y", "score": 0.25}]
    assert same_output(a, [{"label": "x", "score": 0.5 + 1e-7}, {"label": "y", "score": 0.25}])
    assert not same_output(a, [{"label": "x", "score": 0.51}, {"label": "y", "score": 0.25}])
    assert not same_output(a, [{"label": "y", "score": 0.5}, {"label": "x", "score": 0.25}])
    assert not same_output(a, a[:1])
    assert not same_output({"text": "abc"}, {"text": "abd"})
    assert not same_output({"ok": True}, {"ok": 1})
