"""The inference process: models load and run in a companion process of each web process.

Why a process and not a thread: a forward pass lets go of the GIL around every operator and has
to take it back for the next one. In a web process, request threads doing Python work (routing,
authentication, the ORM, JSON) take it in between, and the model waits up to the interpreter's
switch interval each time. Measured here (MiniLM-L6, one torch thread): one predict takes 8 ms
alone and over 500 ms beside one busy Python thread. In its own interpreter the model runs at full
speed while the web process reads, checks and answers requests.

The split: the web process authenticates, decodes and checks every input (a bad one is a 400
before anything is queued) and batches concurrent calls per model (`MicroBatcher`); this
process holds the model cache (least recently used out, bounded by `SERVING_CACHE_BYTES`) and
runs each batch through the task's `predict`. It is started at the first prediction (a few
seconds: a fresh interpreter sets up Django and the plugins), and started again at the next call
if it dies (a model that runs it out of memory costs the calls in flight a
503, not the web process). It ends with its web process.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import traceback

from verticals.sdk.contracts import InputError
from verticals.serving.cache import ModelCache


class InferenceRestarted(Exception):
    """The inference process stopped during the call (e.g. out of memory); HTTP 503, retry."""


# --- the web process's side -------------------------------------------------------------------
# One pipe, one call at a time: the inference process runs calls one after another anyway, and the
# calling thread (a model's batcher) sends and waits itself — no hand-off through other threads,
# each of which would have to win the web process's GIL back.

_lock = threading.Lock()
_child = None  # (process, connection)


def _running():
    global _child
    if _child is None or not _child[0].is_alive():
        from django.conf import settings

        context = multiprocessing.get_context("spawn")  # a fresh interpreter: forking threads and torch is unsafe
        ours, theirs = context.Pipe()
        child = context.Process(
            target=_serve, name="verticals-inference", daemon=True,
            args=(theirs, os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE,
                  settings.SERVING_CACHE_BYTES, settings.TORCH_THREADS),
        )
        child.start()
        theirs.close()
        _child = (child, ours)
    return _child


def call(function, *args):
    """Run `function(*args)` in the inference process and return its result (or raise its error)."""
    global _child
    with _lock:
        child, connection = _running()
        try:
            connection.send((function.__name__, args))
            ok, value = connection.recv()
        except (EOFError, OSError):
            _child = None
            connection.close()
            child.join(timeout=5)
            raise InferenceRestarted(
                "The model process stopped while it ran this call (it may have run out of memory); it starts again "
                "with the next call. Retry, or send fewer or smaller inputs.") from None
    if not ok:
        raise value
    return value


def call_if_running(function, *args):
    """Like `call`, but only where the inference process already runs (nothing to start for)."""
    return call(function, *args) if _child is not None and _child[0].is_alive() else None


def stop() -> None:
    """End the inference process (the next call starts a fresh one)."""
    global _child
    with _lock:
        if _child is not None:
            child, connection = _child
            _child = None
            connection.close()  # it reads the end of the pipe and returns
            child.join(timeout=10)
            if child.is_alive():
                child.kill()


# --- the inference process's side ---------------------------------------------------------------

_models: ModelCache | None = None


def _serve(connection, settings_module: str, cache_bytes: int, torch_threads: int) -> None:
    """The inference process's loop: a call in, its answer out, until the web process closes the
    pipe or ends (the next read finds the pipe's end)."""
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()  # the plugins, found through their entry points as in the web process
    if torch_threads > 0:
        import torch

        torch.set_num_threads(torch_threads)
    global _models
    _models = ModelCache(cache_bytes)
    calls = {f.__name__: f for f in (predict, forget, loaded_keys, pid, _exit)}
    while True:
        try:
            name, args = connection.recv()
        except (EOFError, OSError):
            return
        try:
            answer = (True, calls[name](*args))
        except InputError as exc:
            answer = (False, InputError(str(exc)))
        except Exception as exc:  # the caller gets the error with this process's traceback in its words
            answer = (False, RuntimeError("In the inference process: " + "".join(traceback.format_exception(exc))[-4000:]))
        try:
            connection.send(answer)
        except Exception as exc:  # an output that cannot travel (not picklable)
            connection.send((False, RuntimeError(f"In the inference process: the answer could not be sent back: {exc!r}")))


def predict(task_name: str, key: tuple, size: int, files: str, inputs: list, options: dict) -> list:
    """(In the inference process.) The task's outputs for decoded inputs, loading the model once."""
    from verticals.sdk import discovery

    task = discovery.get_task(task_name)
    model = _models.get(key, size, lambda: task.load(files))
    return task.predict(model, inputs, options=options)


def forget(key: tuple) -> None:
    """(In the inference process.) Drop a model from the cache."""
    _models.discard(key)


def loaded_keys() -> list[tuple]:
    """(In the inference process.) The models loaded, least recently used first."""
    return _models.keys()


def pid() -> int:
    return os.getpid()


def _exit(code: int) -> None:
    """(In the inference process.) End abruptly, as a crash would: for tests."""
    os._exit(code)
