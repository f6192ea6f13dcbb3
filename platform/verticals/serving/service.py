"""Predictions: decode and check inputs, batch concurrent calls, run them in the inference process."""

from __future__ import annotations

import threading
from decimal import Decimal

from django.conf import settings

from verticals.billing import port
from verticals.registry import services as registry
from verticals.registry.models import ModelVersion
from verticals.sdk import discovery
from verticals.sdk.contracts import InputError, Task
from verticals.sdk.inputs import EncodedImage
from verticals.serving import gates, process
from verticals.serving.batcher import BatcherClosed, MicroBatcher
from verticals.serving.errors import (  # noqa: F401  (InferenceFailed… re-exported for callers)
    BadInput,
    InferenceFailed,
    InferenceRestarted,
    ModelNotLoadable,
    ModelUnavailable,
)

_batchers: dict[tuple, MicroBatcher] = {}
_lock = threading.Lock()


def task_of(model_version: ModelVersion) -> Task:
    task = discovery.enabled_tasks(model_version.tenant).get(model_version.task)
    if task is None:
        raise ModelUnavailable(
            f"The task '{model_version.task}' of this model is not available here."
        )
    if not model_version.predictable:
        raise ModelUnavailable(
            "This model has no classification head yet (an imported encoder); fine-tune it, then predict."
        )
    return task


def generation_tasks(tenant) -> dict[str, Task]:
    """The tasks enabled for `tenant` that generate text (stream)."""
    return {name: task for name, task in discovery.enabled_tasks(tenant).items() if task.streams}


def base_generation_task(base, tenant) -> Task | None:
    """The generation task a garden base model serves for `tenant`, or None."""
    tasks = generation_tasks(tenant)
    return next((tasks[name] for name in registry.tasks_for_base(base) if name in tasks), None)


def generation_task_of(model, tenant) -> Task:
    """The streaming task a model version (or a garden base model) generates with, for `tenant`."""
    if isinstance(model, ModelVersion):
        task = task_of(model)
    else:
        task = base_generation_task(model, tenant)
        if task is None:
            raise ModelUnavailable(f"The base model '{model.name}' does not generate text here.")
    if not task.streams:
        raise ModelUnavailable(
            f"This model's task ('{task.name}') does not generate text; use its predict endpoint."
        )
    return task


def model_key(model_version: ModelVersion) -> tuple:
    return ("model", model_version.public_id, model_version.sha256)


def forget(model_version: ModelVersion) -> None:
    """Drop a deleted model from this web process's inference process (others let it age out)."""
    process.call_if_running(process.forget, model_key(model_version))


def reading_body(length: int):
    """A context in which a predict call's body of `length` bytes is read, parsed and decoded: it
    starts once the body fits beside those of the calls in progress (gates.body_bytes)."""
    return gates.body_bytes().holding(length)


def check_file_size(name: str, size: int) -> None:
    """A file sent to predict (the API's multipart inputs, the playground's image) fits what a
    predict call takes, SERVING_MAX_BODY_BYTES: checked before it is read, or BadInput."""
    limit = settings.SERVING_MAX_BODY_BYTES
    if size > limit:
        raise BadInput(f"'{name}' has {size} bytes; at most {limit}.")


def decode_inputs(
    task: Task, raw_inputs: list, *, single: bool = False, model_version: ModelVersion | None = None
) -> list:
    """Each raw input decoded by its task and checked against the task's input schema.

    Images come back from `decode_input` with only their header read (sdk.EncodedImage): all of
    them are checked against the pixel limits first (per image, and the request's budget), then
    decoded one by one towards the size the model takes (`task.input_size` of its config), so that
    a request holds one full-size bitmap at a time and sends small images to the inference process."""
    decoded = []
    for index, raw in enumerate(raw_inputs):
        where = _where(index, single)
        try:
            value = task.decode_input(raw)
        except InputError as exc:
            raise BadInput(str(exc), where, code=exc.code) from exc
        if not isinstance(raw, (bytes, bytearray)):
            found = schema_errors(task.input_schema, raw)
            if found:
                raise BadInput(found[0], where)
        decoded.append(value)
    encoded = [
        (index, value) for index, value in enumerate(decoded) if isinstance(value, EncodedImage)
    ]
    if encoded:
        _check_pixels(encoded, single)
        fit = _input_size(task, model_version) if model_version is not None else None
        for index, value in encoded:
            with gates.decoded_pixels().holding(value.pixels):
                try:
                    decoded[index] = value.decode(fit=fit)
                except InputError as exc:
                    raise BadInput(str(exc), _where(index, single), code=exc.code) from exc
    return decoded


def _where(index: int, single: bool) -> str:
    return "inputs" if single else f"inputs[{index}]"


def _check_pixels(encoded: list[tuple[int, EncodedImage]], single: bool) -> None:
    per_image, per_request = settings.SERVING_MAX_IMAGE_PIXELS, settings.SERVING_MAX_REQUEST_PIXELS
    limits = (
        f"a predict call takes at most {per_image:,} pixels per image and {per_request:,} in all"
    )
    total = 0
    for index, image in encoded:
        if image.pixels > per_image:
            raise BadInput(
                f"The image has {image.width}×{image.height} = {image.pixels:,} pixels; {limits}. "
                "Send a smaller image.",
                _where(index, single),
            )
        total += image.pixels
        if total > per_request:
            everything = sum(i.pixels for _, i in encoded)
            raise BadInput(
                f"The call's {len(encoded)} images hold {everything:,} pixels ({total:,} up to this one); "
                f"{limits}. Send fewer or smaller images per call, or predict many with a batch_predict job.",
                _where(index, single),
            )


_input_sizes: dict[tuple, tuple[int, int] | None] = {}


def _input_size(task: Task, model_version: ModelVersion) -> tuple[int, int] | None:
    """The size the model resizes its images to (from its config, read once per model version)."""
    key = model_key(model_version)
    if key not in _input_sizes:
        _input_sizes[key] = task.input_size(model_version.config or {})
    return _input_sizes[key]


_validators: dict[str, object] = {}


def schema_errors(schema: dict, value) -> list[str]:
    """Schema problems in words that do not repeat the (possibly huge) input."""
    import json

    import jsonschema

    # One validator per schema for the life of the process: this runs on every predicted input.
    key = json.dumps(schema, sort_keys=True)
    validator = _validators.get(key)
    if validator is None:
        validator = _validators[key] = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in validator.iter_errors(value):
        # e.g. messages.0.content, or "" for the input itself
        where = ".".join(str(part) for part in error.absolute_path)
        messages.append(f"{where}: {_worded(error)}" if where else _worded(error))
    return messages


def _worded(error) -> str:
    if error.validator == "maxLength":
        return f"has {len(error.instance)} characters; at most {error.validator_value}."
    if error.validator == "minLength":
        return f"needs at least {error.validator_value} character(s)."
    if error.validator == "type":
        return f"must be of type {error.validator_value}."
    return error.message[:200]


def _batcher(model_version: ModelVersion, task: Task) -> MicroBatcher:
    key = model_key(model_version)
    with _lock:
        batcher = _batchers.get(key)
        if batcher is None or batcher.closed:

            def run(inputs, options, _mv=model_version, _task=task, _key=key):
                # stored files, copied here once if the storage is remote
                files = str(registry.model_files(_mv))
                try:
                    return process.call(
                        process.predict, _task.name, _key, _mv.size_bytes, files, inputs, options
                    )
                except InputError as exc:
                    raise BadInput(str(exc), code=exc.code) from None

            batcher = MicroBatcher(
                run,
                max_batch=task.max_batch,
                max_wait=settings.SERVING_BATCH_WAIT_MS / 1000,
                name=f"batcher-{model_version.public_id}",
            )
            _batchers[key] = batcher
    return batcher


class MeteredStream:
    """A generation's events (GenerationEvent), recorded as one usage event when it ends — finished,
    failed or closed early (a client that went away pays for the tokens it was sent)."""

    def __init__(self, stream: process.Stream, usage: dict, admission):
        self._stream, self._usage, self._admission = stream, usage, admission
        self.prompt_tokens = stream.prompt_tokens
        self.completion_tokens = 0
        self.finish_reason = ""
        self._recorded = False

    def __iter__(self):
        return self

    def __next__(self):
        try:
            event = next(self._stream)
        except StopIteration:  # closed before its end: cancelled
            self.finish_reason = self.finish_reason or "cancelled"
            self._record()
            raise
        except Exception:
            self._record()
            raise
        self.completion_tokens = max(self.completion_tokens, event.completion_tokens)
        if event.finished:
            self.finish_reason = event.finish_reason or ""
            self._record()
        return event

    def cancel(self) -> None:
        """Stop the generation if it still runs (any thread; no database)."""
        self._stream.close()

    def close(self) -> None:
        """Stop it and record what it used."""
        self._stream.close()
        self.finish_reason = self.finish_reason or "cancelled"
        self._record()

    def _record(self) -> None:
        if self._recorded:
            return
        self._recorded = True
        usage = dict(self._usage)
        tenant, meter = usage.pop("tenant"), usage.pop("meter")
        port.record_call(
            tenant,
            [
                port.Usage(
                    meter=meter,
                    quantity=Decimal(self.prompt_tokens + self.completion_tokens),
                    **usage,
                    details={
                        "prompt_tokens": self.prompt_tokens,
                        "completion_tokens": self.completion_tokens,
                        "finish_reason": self.finish_reason,
                    },
                )
            ],
            admission=self._admission,
        )


def admit(caller, task: Task, units: dict) -> port.Admission:
    """The plan lets this call in (or port.Refused: 429, 402, 403) before any work starts."""
    return port.admit(caller.tenant, task=task.name, units=units)


def _generation_inputs(task: Task, raw_inputs: list, options: dict) -> list:
    """The decoded inputs of a generation call, checked with its parameters (BadInput names which)."""
    decoded = decode_inputs(task, raw_inputs, single=len(raw_inputs) == 1)
    problems = schema_errors(task.generation_params_schema, options)
    if problems:
        raise BadInput(problems[0], "parameters")
    return decoded


def _token_meter(task: Task) -> str:
    return next(iter(task.meters), "textgen.tokens")


def generate(
    *,
    model,
    caller,
    raw_input,
    options: dict,
    route: str = "predict.stream",
    project=None,
    admission=None,
    decoded=None,
) -> MeteredStream:
    """Start generating from one input with a model version or a garden base model: a stream of
    GenerationEvents (close it to cancel), metered when it ends. Its failures are ServiceErrors
    (verticals.serving.errors): BadInput (400) for a bad input or parameter, or a prompt the model
    cannot hold (code context_length_exceeded); ModelUnavailable (409); InferenceRestarted and
    ModelNotLoadable (503); port.Refused (429, 402, 403) when the plan does not let it in."""
    task = generation_task_of(model, caller.tenant)
    if decoded is None:
        decoded = _generation_inputs(task, [raw_input], options)[0]
    if admission is None:
        admission = admit(
            caller, task, {_token_meter(task): None}
        )  # tokens are known at the end: it runs while some are left
    files = str(registry.model_files(model))
    try:
        stream = process.stream(
            task.name, model_key(model), model.size_bytes, files, decoded, options
        )
    except InputError as exc:
        admission.release()
        raise BadInput(str(exc), code=exc.code) from None
    except BaseException:
        admission.release()
        raise
    is_version = isinstance(model, ModelVersion)
    return MeteredStream(
        stream,
        {
            "tenant": caller.tenant,
            "project_id": model.project_id if is_version else (project.pk if project else None),
            "model": model.public_id if is_version else model.name,
            "task": task.name,
            "route": route,
            "meter": _token_meter(task),
            "api_key": caller.api_key,
            "user": caller.user,
        },
        admission,
    )


def complete(
    *, model, caller, raw_inputs: list, options: dict, route: str = "predict", project=None
) -> list[dict]:
    """Generate to the end for each input (they run side by side in the engine), as one metered call:
    [{generated_text, finish_reason, usage: {prompt_tokens, completion_tokens}}]."""
    task = generation_task_of(model, caller.tenant)
    decoded = _generation_inputs(task, raw_inputs, options)
    admission = admit(caller, task, {_token_meter(task): None})
    streams = []
    try:
        for index, (raw, value) in enumerate(zip(raw_inputs, decoded, strict=True)):
            try:
                streams.append(
                    generate(
                        model=model,
                        caller=caller,
                        raw_input=raw,
                        options=options,
                        route=route,
                        project=project,
                        admission=admission,
                        decoded=value,
                    )
                )
            except BadInput as exc:
                if len(raw_inputs) > 1 and exc.where == "inputs":
                    exc.where = f"inputs[{index}]"
                raise
        outputs = []
        for stream in streams:
            text = "".join(event.text for event in stream)
            outputs.append(
                {
                    "generated_text": text,
                    "finish_reason": stream.finish_reason,
                    "usage": {
                        "prompt_tokens": stream.prompt_tokens,
                        "completion_tokens": stream.completion_tokens,
                    },
                }
            )
        return outputs
    finally:
        for stream in streams:
            stream.close()


def predict(
    *,
    model_version: ModelVersion,
    inputs: list,
    options: dict | None = None,
    single: bool = False,
    caller=None,
    route: str = "predict",
) -> list:
    """Outputs for raw inputs, in order, metered (the task's meters, units per input) when a caller
    is given. Its failures are ServiceErrors: BadInput (400) for bad input, ModelUnavailable (409),
    port.Refused (429, 402, 403), InferenceRestarted (503) when the inference process stopped
    during the call, ModelNotLoadable (503), InferenceFailed (500) when the model itself failed.

    A metered call (with a caller) to a model that generates text is ModelUnavailable: its work is
    tokens (`generate`, `complete`), not one unit per input. Unmetered calls (the plugin
    conformance suite) still run the task's predict."""
    task = task_of(model_version)
    if task.streams and caller is not None:
        raise ModelUnavailable(
            "This model generates text; send a prompt to its predict route with the generation shape, "
            "or use /v1/chat/completions."
        )
    if not inputs:
        raise BadInput("The list is empty; send one input or a non-empty list.")
    if len(inputs) > task.max_batch:
        raise BadInput(
            f"{len(inputs)} inputs in one call; this task takes at most {task.max_batch} (use a batch_predict job for more)."
        )
    decoded = decode_inputs(task, inputs, single=single, model_version=model_version)
    units = {
        meter: Decimal(str(per_input)) * len(inputs) for meter, per_input in task.meters.items()
    }
    admission = admit(caller, task, units) if caller is not None else None
    try:
        try:
            outputs = _batcher(model_version, task).submit(decoded, options)
        except BatcherClosed:
            # it went idle between the lookup and the submit: a fresh one takes the call
            outputs = _batcher(model_version, task).submit(decoded, options)
    except BaseException:
        if admission is not None:
            admission.release()
        raise
    if caller is not None:
        port.record_call(
            caller.tenant,
            [
                port.Usage(
                    meter=meter,
                    quantity=quantity,
                    project_id=model_version.project_id,
                    task=task.name,
                    model=model_version.public_id,
                    api_key=caller.api_key,
                    user=caller.user,
                    route=route,
                )
                for meter, quantity in units.items()
            ],
            admission=admission,
        )
    return outputs
