"""A training loop for plugins: the parts every task's `train()` repeats, written once.

    from verticals.sdk.training import TrainingLoop, parameter_groups, usable_checkpoint

    checkpoint = usable_checkpoint(ctx, {"labels": labels}, warning="… training starts over.")
    optimizer = torch.optim.AdamW(parameter_groups(module, weight_decay), lr=learning_rate)
    loop = TrainingLoop(ctx, optimizer, epochs=epochs, steps_per_epoch=steps, learning_rate=learning_rate)
    loop.resume(checkpoint, module.load_state_dict)
    for epoch in loop.epochs():
        module.train()
        for indices in epoch.batches(len(rows), batch_size):
            loop.step(loss_of(indices), samples=len(indices))
        loop.end_epoch(validation_metrics(), weights=module.state_dict(), state={"labels": labels})

What it does for the task:

- AdamW parameter groups without weight decay on biases and normalization weights;
- each epoch's randomness (its shuffle, augmentation and dropout) drawn from seeds of
  (ctx.seed, epoch) only, so a job resumed after a lost worker repeats what the lost one would
  have done;
- per step: the learning rate of a schedule, the divergence check (a loss that became NaN or
  infinite fails the job with a `TrainingError` the customer reads), backward, gradient clipping,
  the optimizer's step, `ctx.count_samples` and `ctx.report` — which raises once the job was
  cancelled, so cancelling stops the loop at its next step;
- per epoch: the epoch's metrics reported, and a checkpoint (`model.*` tensors, the optimizer's
  state, and JSON state with `epoch` and `step`) that `resume()` continues from at the next epoch.

torch is imported inside the functions: importing `verticals.sdk` stays light (Django imports
every plugin at start-up).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from verticals.sdk.artifacts import optimizer_tensors, restore_optimizer
from verticals.sdk.contracts import Checkpoint, TrainContext, TrainingError

if TYPE_CHECKING:  # pragma: no cover
    import torch

# (run seed, epoch) -> (the seed of torch's global generator — dropout —, the seed of the epoch's
# own generator — its shuffle and augmentation).
EpochSeeds = Callable[[int, int], tuple[int, int]]

MODEL_PREFIX = "model."


# --- schedules and sizes ------------------------------------------------------------------------


def auto_epochs(steps_per_epoch: int, *, steps: int, low: int, high: int) -> int:
    """Enough epochs for about `steps` optimizer steps, within [low, high]: many passes over a tiny
    dataset, few over a large one."""
    return max(low, min(high, math.ceil(steps / max(1, steps_per_epoch))))


def warmup_then_decay(
    learning_rate: float, warmup_steps: int, total_steps: int
) -> Callable[[int], float]:
    """The learning rate by step: a linear warm-up, then a linear decay to zero."""

    def rate(step: int) -> float:
        if step < warmup_steps:
            return learning_rate * (step + 1) / warmup_steps
        return learning_rate * max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return rate


# --- weight decay -------------------------------------------------------------------------------


def parameter_groups(
    parameters: Any, weight_decay: float, *, no_decay_names: Iterable[str] = ("norm",)
) -> list[dict]:
    """Two optimizer parameter groups of the trainable parameters: weight decay on weights (two
    dimensions or more), none on biases and normalization weights (one dimension, or a name that
    holds one of `no_decay_names`, case-insensitive). Each group keeps the parameters' order.

    `parameters` is an `nn.Module` or (name, parameter) pairs (`module.named_parameters()`)."""
    named = parameters.named_parameters() if hasattr(parameters, "named_parameters") else parameters
    markers = tuple(m.lower() for m in no_decay_names)
    decay: list[Any] = []
    no_decay: list[Any] = []
    for name, parameter in named:
        if not parameter.requires_grad:
            continue
        exempt = parameter.ndim < 2 or any(m in name.lower() for m in markers)
        (no_decay if exempt else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]


# --- per-epoch seeds ----------------------------------------------------------------------------


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's randomness: a resumed run draws what an uninterrupted one did."""
    return (int(seed) * 1_000_003 + 7919 * (epoch + 1)) % (2**63 - 1)


def default_epoch_seeds(seed: int, epoch: int) -> tuple[int, int]:
    value = epoch_seed(seed, epoch)
    return value, value + 1


def epoch_generator(
    seed: int, epoch: int, *, seeds: EpochSeeds = default_epoch_seeds
) -> torch.Generator:
    """Seed torch's global generator (dropout) for the epoch and return the epoch's own generator
    (its shuffle, its augmentation): both depend on (seed, epoch) only."""
    import torch

    global_seed, own_seed = seeds(int(seed), int(epoch))
    torch.manual_seed(global_seed)
    return torch.Generator().manual_seed(own_seed)


def epoch_order(
    seed: int, epoch: int, rows: int, *, seeds: EpochSeeds = default_epoch_seeds
) -> torch.Tensor:
    """Seed the epoch's dropout and return its shuffled row order (see `epoch_generator`)."""
    import torch

    return torch.randperm(rows, generator=epoch_generator(seed, epoch, seeds=seeds))


# --- the divergence check -----------------------------------------------------------------------


def divergence_message(value: float, *, epoch: int, step: int, learning_rate: float) -> str:
    """What a job whose loss became NaN or infinite says (`epoch` and `step` count from 1)."""
    return (
        f"The training loss became {value} at epoch {epoch}, step {step}: training diverged. "
        f"Lower the learning_rate (it was {learning_rate:g}) and train again."
    )


def check_finite(value: float, *, epoch: int, step: int, learning_rate: float) -> None:
    """Raise the TrainingError of a diverged training when `value` is NaN or infinite."""
    if not math.isfinite(value):
        raise TrainingError(
            divergence_message(value, epoch=epoch, step=step, learning_rate=learning_rate)
        )


# --- checkpoints --------------------------------------------------------------------------------


def usable_checkpoint(
    ctx: TrainContext, expect: dict, *, warning: str, missing_ok: bool = False
) -> Checkpoint | None:
    """The job's last checkpoint (`ctx.restore()`) when its state matches `expect` (same labels,
    same architecture …), else None — after logging `warning` when there was one that does not.
    `missing_ok`: a key the state lacks matches."""
    checkpoint = ctx.restore()
    if checkpoint is None:
        return None
    state = checkpoint.state or {}
    for key, value in expect.items():
        if state.get(key, value if missing_ok else None) != value:
            ctx.log(warning, "warning")
            return None
    return checkpoint


def model_tensors(checkpoint: Checkpoint, prefix: str = MODEL_PREFIX) -> dict:
    """The model's tensors of a checkpoint, by their names in the model (`prefix` removed)."""
    return {k[len(prefix) :]: v for k, v in checkpoint.tensors.items() if k.startswith(prefix)}


# --- the loop -----------------------------------------------------------------------------------


class Epoch:
    """One epoch of a `TrainingLoop`: its index (from 0) and its seeded generator."""

    def __init__(self, loop: TrainingLoop, index: int, generator: torch.Generator):
        self.loop = loop
        self.index = index
        self.generator = generator
        self.loss_sum = 0.0
        self.loss_weight = 0.0

    @property
    def number(self) -> int:
        """The epoch counted from 1 (as messages and checkpoints name it)."""
        return self.index + 1

    @property
    def mean_loss(self) -> float:
        """The training loss of the epoch so far, averaged by each step's weight."""
        return self.loss_sum / self.loss_weight if self.loss_weight else 0.0

    def order(self, rows: int) -> torch.Tensor:
        """A shuffled order of `rows` rows, drawn from the epoch's generator."""
        import torch

        return torch.randperm(rows, generator=self.generator)

    def batches(self, rows: int, batch_size: int) -> list[torch.Tensor]:
        """The epoch's shuffled row indices in batches of `batch_size` (the last may be smaller)."""
        import torch

        return list(torch.split(self.order(rows), batch_size))


class TrainingLoop:
    """Epochs of optimizer steps with progress, cancellation, the divergence check and
    checkpoints after each epoch, resumable from the last one.

    - `schedule`: the learning rate of a step (set on every parameter group before its update);
      None keeps the optimizer's.
    - `learning_rate`: the peak rate, named in the divergence message.
    - `max_grad_norm`: clip the gradients of `clip` (default: the optimizer's parameters) to this
      norm before each update; None does not clip.
    - `optimizer_prefix`: the names of the optimizer's tensors in a checkpoint.
    - `epoch_seeds`: (seed, epoch) -> (global seed, the epoch generator's seed).
    - `step_description`, `epoch_description`: the progress descriptions, formatted with
      `epoch` (from 1) and `epochs`.
    """

    def __init__(
        self,
        ctx: TrainContext,
        optimizer: Any,
        *,
        epochs: int,
        steps_per_epoch: int,
        learning_rate: float,
        schedule: Callable[[int], float] | None = None,
        max_grad_norm: float | None = None,
        clip: Iterable[Any] | None = None,
        optimizer_prefix: str = "optim.",
        epoch_seeds: EpochSeeds = default_epoch_seeds,
        step_description: str = "epoch {epoch}/{epochs}",
        epoch_description: str = "epoch {epoch}/{epochs} done",
    ):
        self.ctx = ctx
        self.optimizer = optimizer
        self.epoch_count = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.learning_rate = float(learning_rate)
        self.schedule = schedule
        self.max_grad_norm = max_grad_norm
        self.clip = list(clip) if clip is not None else None
        self.optimizer_prefix = optimizer_prefix
        self.epoch_seeds = epoch_seeds
        self.step_description = step_description
        self.epoch_description = epoch_description
        self.start_epoch = 0
        self.step_count = 0
        self.current: Epoch | None = None

    @property
    def total_steps(self) -> int:
        return self.epoch_count * self.steps_per_epoch

    # --- resuming ---------------------------------------------------------------------------

    def resume(
        self, checkpoint: Checkpoint | None, load: Callable[[dict], Any] | None = None
    ) -> int:
        """Continue from `checkpoint` (None: start at epoch 0): hand its model tensors (names
        without `model.`) to `load`, restore the optimizer's state, and start at the epoch after
        the checkpoint's. Returns that epoch (counted from 0)."""
        if checkpoint is None:
            return self.start_epoch
        if load is not None:
            load(model_tensors(checkpoint))
        restore_optimizer(
            self.optimizer, checkpoint.tensors, prefix=self.optimizer_prefix, device=self.ctx.device
        )
        state = checkpoint.state or {}
        self.start_epoch = min(int(state.get("epoch", checkpoint.step)), self.epoch_count)
        self.step_count = self.start_epoch * self.steps_per_epoch
        self.ctx.log(f"Resuming after epoch {self.start_epoch} of {self.epoch_count}.")
        return self.start_epoch

    # --- epochs and steps -------------------------------------------------------------------

    def epochs(self) -> Iterator[Epoch]:
        """The epochs left to train, each with its generator (torch's global one seeded too)."""
        for index in range(self.start_epoch, self.epoch_count):
            generator = epoch_generator(self.ctx.seed, index, seeds=self.epoch_seeds)
            self.current = Epoch(self, index, generator)
            yield self.current

    def _describe(self, template: str) -> str:
        number = self.current.number if self.current is not None else 0
        return template.format(epoch=number, epochs=self.epoch_count)

    def step(self, loss: Any, *, samples: int, weight: float | None = None) -> float:
        """One optimizer step on `loss` (a scalar tensor) over `samples` examples: the divergence
        check, the scheduled learning rate, backward, clipping, the update, then
        `ctx.count_samples` and `ctx.report` (which raises once the job was cancelled). `weight`
        (default `samples`) weighs the loss in the epoch's mean. Returns the loss's value."""
        epoch = self.current
        if epoch is None:
            raise RuntimeError("TrainingLoop.step() runs inside `for epoch in loop.epochs()`.")
        value = float(loss.detach())
        check_finite(
            value,
            epoch=epoch.number,
            step=self.step_count + 1,
            learning_rate=self.learning_rate,
        )
        if self.schedule is not None:
            rate = self.schedule(self.step_count)
            for group in self.optimizer.param_groups:
                group["lr"] = rate
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            import torch

            clipped = (
                self.clip
                if self.clip is not None
                else [p for group in self.optimizer.param_groups for p in group["params"]]
            )
            torch.nn.utils.clip_grad_norm_(clipped, self.max_grad_norm)
        self.optimizer.step()
        self.step_count += 1
        weight = samples if weight is None else weight
        epoch.loss_sum += value * weight
        epoch.loss_weight += weight
        self.ctx.count_samples(samples)
        self.ctx.report(
            self.step_count,
            self.total_steps,
            {"train_loss": value},
            description=self._describe(self.step_description),
        )
        return value

    def end_epoch(
        self,
        metrics: dict | None = None,
        *,
        weights: dict,
        state: dict | None = None,
        tensors: dict | None = None,
    ) -> None:
        """Report the epoch's `metrics` (when there are any) and checkpoint it: `weights` (the
        model's tensors, saved as `model.<name>`), the optimizer's state, any other `tensors`, and
        the JSON `state` with the epoch and the step added."""
        epoch = self.current
        if epoch is None:
            raise RuntimeError("TrainingLoop.end_epoch() runs inside `for epoch in loop.epochs()`.")
        if metrics:
            self.ctx.report(
                self.step_count,
                self.total_steps,
                metrics,
                description=self._describe(self.epoch_description),
            )
        saved = {
            **{f"{MODEL_PREFIX}{key}": value for key, value in weights.items()},
            **optimizer_tensors(self.optimizer, prefix=self.optimizer_prefix),
            **(tensors or {}),
        }
        self.ctx.checkpoint(
            epoch.number,
            saved,
            {"epoch": epoch.number, "step": self.step_count, **(state or {})},
        )
