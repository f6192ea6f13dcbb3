"""verticals.sdk.training: parameter groups, per-epoch seeds, the divergence check, cancellation,
checkpoints and resuming — on a tiny torch model, in memory (LocalTrainContext)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from verticals.sdk import (
    DatasetSplit,
    LocalTrainContext,
    Task,
    TrainingError,
    TrainingLoop,
    auto_epochs,
    epoch_order,
    parameter_groups,
    usable_checkpoint,
    warmup_then_decay,
)
from verticals.sdk.training import epoch_generator

ROWS, BATCH, EPOCHS = 12, 4, 3


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.norm = nn.LayerNorm(2)
        self.scale = nn.Parameter(torch.ones(2, 2))  # 2-D: decayed
        self.frozen = nn.Parameter(torch.zeros(1, 2), requires_grad=False)

    def forward(self, x):
        return self.norm(self.linear(x)) @ self.scale + self.frozen


def context(seed: int = 0, **kwargs) -> LocalTrainContext:
    empty = DatasetSplit("train", [], ["a", "b"])
    return LocalTrainContext(Task(), train=empty, validation=empty, seed=seed, **kwargs)


DATA = torch.Generator().manual_seed(99)
INPUTS = torch.randn(ROWS, 3, generator=DATA)
TARGETS = torch.randint(0, 2, (ROWS,), generator=DATA)


def train(ctx, *, epochs=EPOCHS, loss_of=None, orders=None) -> Tiny:
    """The loop as a plugin writes it; `orders` collects each epoch's row order."""
    torch.manual_seed(ctx.seed)
    model = Tiny()
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.1), lr=0.05)
    loop = TrainingLoop(
        ctx,
        optimizer,
        epochs=epochs,
        steps_per_epoch=ROWS // BATCH,
        learning_rate=0.05,
        schedule=warmup_then_decay(0.05, 2, epochs * ROWS // BATCH),
        max_grad_norm=1.0,
    )
    loop.resume(usable_checkpoint(ctx, {"rows": ROWS}, warning="not ours"), model.load_state_dict)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in loop.epochs():
        model.train()
        order = epoch.order(ROWS)
        if orders is not None:
            orders[epoch.index] = order.tolist()
        for indices in torch.split(order, BATCH):
            loss = loss_fn(model(INPUTS[indices]), TARGETS[indices])
            loop.step(loss if loss_of is None else loss_of(loss, loop), samples=len(indices))
        loop.end_epoch(
            {"epoch_train_loss": epoch.mean_loss},
            weights=model.state_dict(),
            state={"rows": ROWS},
        )
    return model


def test_no_weight_decay_on_biases_and_norms_and_nothing_frozen():
    model = Tiny()
    decay, no_decay = parameter_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in decay["params"]] == ["scale", "linear.weight"]
    assert [names[id(p)] for p in no_decay["params"]] == [
        "linear.bias",
        "norm.weight",
        "norm.bias",
    ]
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.01, 0.0)
    # Named pairs work too, and a name marker can exempt a 2-D weight.
    decay, no_decay = parameter_groups(model.named_parameters(), 0.01, no_decay_names=("Scale",))
    assert [names[id(p)] for p in decay["params"]] == ["linear.weight"]


def test_each_epoch_has_its_own_order_from_seed_and_epoch():
    first = [epoch_order(5, epoch, 20).tolist() for epoch in range(3)]
    assert first == [epoch_order(5, epoch, 20).tolist() for epoch in range(3)]
    assert first[0] != first[1] and sorted(first[0]) == list(range(20))
    assert epoch_order(6, 0, 20).tolist() != first[0]
    # the global generator (dropout) is seeded for the epoch too
    epoch_generator(5, 1)
    a = torch.rand(3)
    epoch_generator(5, 1)
    assert torch.equal(a, torch.rand(3))


def test_schedules_and_sizes():
    rate = warmup_then_decay(1.0, 2, 10)
    assert [rate(s) for s in (0, 1, 2, 10)] == [0.5, 1.0, 1.0, 0.0]
    assert auto_epochs(10, steps=300, low=5, high=40) == 30
    assert auto_epochs(1000, steps=300, low=5, high=40) == 5


def test_it_reports_every_step_and_checkpoints_every_epoch():
    ctx = context()
    train(ctx)
    steps = [r for r in ctx.reports if "train_loss" in r[2]]
    assert [s for s, _, _ in steps] == list(range(1, EPOCHS * ROWS // BATCH + 1))
    assert all(total == EPOCHS * ROWS // BATCH for _, total, _ in ctx.reports)
    assert len([r for r in ctx.reports if "epoch_train_loss" in r[2]]) == EPOCHS
    assert ctx.samples == EPOCHS * ROWS
    saved = ctx.restore()
    assert saved.step == EPOCHS and saved.state == {"epoch": EPOCHS, "step": 9, "rows": ROWS}
    assert {"model.linear.weight", "model.frozen"} <= set(saved.tensors)
    assert any(k.startswith("optim.") for k in saved.tensors)


class LostWorker(LocalTrainContext):
    """Dies right after the checkpoint of epoch `stop_after`, as a lost worker would."""

    def __init__(self, *args, stop_after, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop_after = stop_after

    def checkpoint(self, step, tensors, state=None):
        super().checkpoint(step, tensors, state)
        if step == self.stop_after:
            raise KeyboardInterrupt


def test_a_resumed_run_continues_at_the_next_epoch_and_ends_as_an_unbroken_one():
    unbroken_orders: dict = {}
    unbroken = train(context(seed=3), orders=unbroken_orders)

    lost = LostWorker(Task(), **_splits(), seed=3, stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        train(lost)
    rerun = context(seed=3)
    rerun._checkpoint = lost.restore()
    orders: dict = {}
    resumed = train(rerun, orders=orders)

    assert "info: Resuming after epoch 1 of 3." in rerun.lines
    assert min(s for s, _, m in rerun.reports if "train_loss" in m) == ROWS // BATCH + 1
    assert rerun.samples == (EPOCHS - 1) * ROWS
    assert orders == {e: unbroken_orders[e] for e in (1, 2)}  # the same shuffles
    for key, value in unbroken.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_a_finished_checkpoint_trains_no_more_and_a_foreign_one_is_ignored():
    done = context()
    train(done)
    again = context()
    again._checkpoint = done.restore()
    train(again)
    assert again.samples == 0 and not again.reports

    foreign = context()
    foreign._checkpoint = done.restore()
    foreign._checkpoint.state["rows"] = 7
    train(foreign)
    assert "warning: not ours" in foreign.lines and foreign.samples == EPOCHS * ROWS


def test_a_diverging_loss_stops_training_with_the_message():
    def nan_at_step_5(loss, loop):
        return loss * float("nan") if loop.step_count == 4 else loss

    ctx = context()
    with pytest.raises(TrainingError) as failed:
        train(ctx, loss_of=nan_at_step_5)
    assert str(failed.value) == (
        "The training loss became nan at epoch 2, step 5: training diverged. "
        "Lower the learning_rate (it was 0.05) and train again."
    )
    assert ctx.samples == 4 * BATCH  # the bad step did not count, and no step came after it
    assert ctx.restore().state["epoch"] == 1


class Cancelled(BaseException):
    """What core's report() raises once the job was cancelled (JobCancelled is a BaseException)."""


class CancelledAfter(LocalTrainContext):
    def __init__(self, *args, steps, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = steps

    def report(self, step, total=None, metrics=None, *, description=""):
        super().report(step, total, metrics, description=description)
        if step >= self.steps:
            raise Cancelled


def test_cancelling_stops_at_the_next_report():
    ctx = CancelledAfter(Task(), **_splits(), steps=2)
    with pytest.raises(Cancelled):
        train(ctx)
    assert [s for s, _, _ in ctx.reports] == [1, 2]
    assert ctx.samples == 2 * BATCH and ctx.restore() is None


def test_step_outside_an_epoch_is_a_mistake():
    model = Tiny()
    loop = TrainingLoop(
        context(),
        torch.optim.AdamW(model.parameters()),
        epochs=1,
        steps_per_epoch=1,
        learning_rate=1e-3,
    )
    with pytest.raises(RuntimeError, match="inside"):
        loop.step(model(INPUTS).sum(), samples=ROWS)


def _splits() -> dict:
    empty = DatasetSplit("train", [], ["a", "b"])
    return {"train": empty, "validation": empty}
