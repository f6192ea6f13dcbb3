"""Server-sent events from a generation: one response type for WSGI and ASGI, ended (and the
generation cancelled) when the client goes away."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse

EVENT_STREAM = "text/event-stream"


def sse(data) -> bytes:
    """One `data:` event; a dict goes as compact JSON, a string as it is (e.g. `[DONE]`)."""
    text = (
        data
        if isinstance(data, str)
        else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    )
    return f"data: {text}\n\n".encode()


def event_stream(
    request, chunks: Iterator[bytes], *, cancel: Callable[[], None], close: Callable[[], None]
) -> StreamingHttpResponse:
    """A streaming response of `chunks`; `close` runs when the stream ends, however it ends,
    after `cancel` (which must not touch the database: it may run on any thread).

    Under ASGI the chunks are pulled in the request's own thread (each pull waits for the next
    event without holding the event loop), and a client that disconnects cancels the response:
    `cancel` then stops the generation and wakes the pull still waiting. Under WSGI the server
    closes the iterator when a write to the client fails.
    """
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if isinstance(getattr(request, "_request", request), ASGIRequest):
        content = _async_chunks(chunks, cancel, close)
    else:
        content = _sync_chunks(chunks, cancel, close)
    return StreamingHttpResponse(content, content_type=EVENT_STREAM, headers=headers)


def _sync_chunks(
    chunks: Iterator[bytes], cancel: Callable[[], None], close: Callable[[], None]
) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        cancel()
        close()


_END = object()


async def _async_chunks(
    chunks: Iterator[bytes], cancel: Callable[[], None], close: Callable[[], None]
):
    pull = sync_to_async(lambda: next(chunks, _END), thread_sensitive=True)
    try:
        while True:
            chunk = await pull()
            if chunk is _END:
                return
            yield chunk
    finally:
        await sync_to_async(cancel, thread_sensitive=False)()  # not behind a pull that still waits
        await sync_to_async(close, thread_sensitive=True)()
