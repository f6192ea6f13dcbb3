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

Two pipes connect them. Calls (predict on a batch, forget a model) go one at a time over the
first, sent and awaited by the calling thread itself. Generation streams go over the second:
the web process sends "generate" and "cancel", the inference process answers with each stream's
events as the model's engine produces them, and a reader thread in the web process hands them
to their streams.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import traceback
from itertools import count

from verticals.sdk import discovery
from verticals.sdk.contracts import InputError
from verticals.sdk.errors import ServiceError
from verticals.serving import memory
from verticals.serving.cache import ModelCache
from verticals.serving.errors import InferenceFailed, InferenceRestarted, ModelNotLoadable

logger = logging.getLogger(__name__)

RESTARTED = (
    "The model process stopped while it ran this call (it may have run out of memory); it starts again "
    "with the next call. Retry, or send fewer or smaller inputs."
)

# --- the web process's side -------------------------------------------------------------------


class _Child:
    def __init__(self, settings_module: str, cache_bytes: int, torch_threads: int):
        # a fresh interpreter: forking threads and torch is unsafe
        context = multiprocessing.get_context("spawn")
        self.calls, calls_end = context.Pipe()
        self.streams, streams_end = context.Pipe()
        self.process = context.Process(
            target=_serve,
            name="verticals-inference",
            daemon=True,
            args=(calls_end, streams_end, settings_module, cache_bytes, torch_threads),
        )
        self.process.start()
        calls_end.close()
        streams_end.close()
        self.open: dict[int, queue.SimpleQueue] = {}  # stream id → its events
        self.send_lock = threading.Lock()
        self.reader = threading.Thread(
            target=self._read_streams, name="inference-streams", daemon=True
        )
        self.reader.start()

    def alive(self) -> bool:
        return self.process.is_alive()

    def _read_streams(self) -> None:
        while True:
            try:
                stream_id, kind, payload = self.streams.recv()
            except (EOFError, OSError):
                break
            events = self.open.get(stream_id)
            if events is not None:
                events.put((kind, payload))
        for events in list(self.open.values()):  # the process ended: every open stream learns it
            events.put(("error", InferenceRestarted(RESTARTED)))

    def send_stream(self, message) -> None:
        with self.send_lock:
            self.streams.send(message)

    def close(self) -> None:
        for connection in (self.calls, self.streams):
            connection.close()  # it reads the end of the pipes and returns
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


_lock = threading.Lock()  # one call at a time on the calls pipe
_start_lock = threading.Lock()
_child: _Child | None = None
_stream_ids = count(1)


def _running() -> _Child:
    global _child
    with _start_lock:
        if _child is None or not _child.alive():
            from django.conf import settings

            _child = _Child(
                os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE,
                settings.SERVING_CACHE_BYTES,
                settings.TORCH_THREADS,
            )
        return _child


def _dead(child: _Child) -> None:
    global _child
    with _start_lock:
        if _child is child:
            _child = None


def call(function, *args):
    """Run `function(*args)` in the inference process and return its result (or raise its error)."""
    with _lock:
        child = _running()
        try:
            child.calls.send((function.__name__, args))
            ok, value = child.calls.recv()
        except (EOFError, OSError):
            _dead(child)
            child.process.join(timeout=5)
            raise InferenceRestarted(RESTARTED) from None
    if not ok:
        raise value
    return value


def call_if_running(function, *args):
    """Like `call`, but only where the inference process already runs (nothing to start for)."""
    return call(function, *args) if _child is not None and _child.alive() else None


class Stream:
    """A generation running in the inference process: iterate for its events (GenerationEvent),
    the last one `finished`; `close()` before the end cancels it there."""

    def __init__(self, child: _Child, stream_id: int, events: queue.SimpleQueue, accepted: dict):
        self._child, self._id, self._events = child, stream_id, events
        self.prompt_tokens = accepted.get("prompt_tokens", 0)
        self.finished = False

    def __iter__(self):
        return self

    def __next__(self):
        if self.finished:
            raise StopIteration
        kind, payload = self._events.get()
        if kind == "closed":
            raise StopIteration
        if kind == "error":
            self._end()
            raise payload
        if payload.finished:
            self._end()
        return payload

    def _end(self) -> None:
        self.finished = True
        self._child.open.pop(self._id, None)

    def close(self) -> None:
        """Cancel the generation if it is still running (the client went away)."""
        if not self.finished:
            self._end()
            self._events.put(("closed", None))  # a thread still waiting for the next event ends too
            try:
                self._child.send_stream(("cancel", self._id, ()))
            except OSError:
                pass


def stream(
    task_name: str, key: tuple, size: int, files: str, decoded_input, options: dict
) -> Stream:
    """Start a generation; return once the inference process accepted it (its errors, such as a
    prompt too long for the model, are raised here, before any event)."""
    child = _running()
    stream_id = next(_stream_ids)
    events: queue.SimpleQueue = queue.SimpleQueue()
    child.open[stream_id] = events
    try:
        child.send_stream(
            ("generate", stream_id, (task_name, key, size, files, decoded_input, options))
        )
    except OSError:
        child.open.pop(stream_id, None)
        _dead(child)
        raise InferenceRestarted(RESTARTED) from None
    kind, payload = events.get()
    if kind == "error":
        child.open.pop(stream_id, None)
        raise payload
    return Stream(child, stream_id, events, payload)


def stop() -> None:
    """End the inference process (the next call starts a fresh one)."""
    global _child
    with _lock, _start_lock:
        child, _child = _child, None
    if child is not None:
        child.close()


# --- the inference process's side ---------------------------------------------------------------

_models: ModelCache | None = None


def _serve(calls, streams, settings_module: str, cache_bytes: int, torch_threads: int) -> None:
    """The inference process: calls answered in this thread, one after another, until the web
    process closes the pipe or ends (the next read finds the pipe's end); streams in another."""
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    import django

    django.setup()  # the plugins, found through their entry points as in the web process
    if torch_threads > 0:
        import torch

        torch.set_num_threads(torch_threads)
    global _models
    _models = ModelCache(cache_bytes, on_evict=_close)
    threading.Thread(target=_serve_streams, args=(streams,), name="streams", daemon=True).start()
    handlers = {f.__name__: f for f in (predict, forget, loaded_keys, pid, _exit)}
    while True:
        try:
            name, args = calls.recv()
        except (EOFError, OSError):
            return
        try:
            answer = (True, handlers[name](*args))
        except Exception as exc:
            answer = (False, _portable(exc))
        args = None  # waiting for the next call must not keep this one's inputs alive
        try:
            calls.send(answer)
        except Exception as exc:  # an output that cannot travel (not picklable)
            calls.send(
                (
                    False,
                    RuntimeError(
                        f"In the inference process: the answer could not be sent back: {exc!r}"
                    ),
                )
            )
        answer = None
        memory.release_soon()  # what the call freed goes back to the system once it is over


def _close(model) -> None:
    """A model leaves the cache: stop what runs on it (its generation engine), if it says how."""
    close = getattr(model, "close", None)
    if callable(close):
        close()


def _portable(exc: Exception) -> Exception:
    """An error the web process can rebuild: an InputError as one (a plugin's own subclass may not
    travel) with its code, serving's own errors as they are, anything else with its traceback."""
    if isinstance(exc, InputError):
        return InputError(str(exc), code=exc.code)
    if isinstance(exc, ServiceError):
        return exc
    return RuntimeError(
        "In the inference process: " + "".join(traceback.format_exception(exc))[-4000:]
    )


def _serve_streams(connection) -> None:
    send_lock = threading.Lock()
    running: dict[int, tuple] = {}  # stream id → (engine, engine request id)

    def send(message) -> None:
        with send_lock:
            try:
                connection.send(message)
            except OSError:
                pass

    while True:
        try:
            kind, stream_id, args = connection.recv()
        except (EOFError, OSError):
            return
        if kind == "cancel":
            found = running.pop(stream_id, None)
            if found is not None:
                found[0].cancel(found[1])
            continue
        try:
            engine, request = _generation(*args)

            def emit(event, _id=stream_id):
                if event.finished:
                    running.pop(_id, None)
                send((_id, "event", event))

            send((stream_id, "accepted", {"prompt_tokens": len(request.prompt_ids)}))
            running[stream_id] = (engine, engine.submit(request, emit))
        except Exception as exc:
            send((stream_id, "error", _portable(exc)))


def _generation(task_name: str, key: tuple, size: int, files: str, decoded_input, options: dict):

    task = discovery.get_task(task_name)
    model = _models.get(key, size, lambda: _load(task, key, files))
    return task.engine(model), task.generation_request(model, decoded_input, options)


def _load(task, key: tuple, files: str):
    """(In the inference process.) The task's model from its files; ModelNotLoadable (logged
    here, with its cause) when they do not load."""
    try:
        return task.load(files)
    except Exception as exc:
        logger.exception("model %s (%s) could not be loaded from %s", key[1], task.name, files)
        raise ModelNotLoadable(
            "The model could not be loaded to serve this call (the error has been logged). "
            "Import or train it again; if it served before, retry."
        ) from exc


def predict(task_name: str, key: tuple, size: int, files: str, inputs: list, options: dict) -> list:
    """(In the inference process.) The task's outputs for decoded inputs, loading the model once."""

    task = discovery.get_task(task_name)
    model = _models.get(key, size, lambda: _load(task, key, files))
    try:
        return task.predict(model, inputs, options=options)
    except ServiceError:  # an InputError too: the caller's to fix
        raise
    except Exception as exc:
        logger.exception("model %s (%s) failed on a batch", key[1], task.name)
        raise InferenceFailed(
            "The model failed while it ran this call (the error has been logged); retry, or "
            "send other inputs."
        ) from exc


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
