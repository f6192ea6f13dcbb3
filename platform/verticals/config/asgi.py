"""ASGI entry point (`gunicorn -k uvicorn_worker.UvicornWorker verticals.config.asgi:application`)."""

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "verticals.config.settings")

# A multipart upload carries its envelope and form fields beside the file (as refuse_oversized allows).
UPLOAD_ENVELOPE = 64 * 1024


def largest_body() -> int:
    """The largest body any route reads: an upload, a predict call, or another route's JSON."""
    return max(
        settings.REGISTRY_MAX_UPLOAD_BYTES + UPLOAD_ENVELOPE,
        settings.SERVING_MAX_BODY_BYTES,
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0,
    )


class BodyTooLarge(Exception):
    """A body over largest(): refused before (or while) it is read, never spooled to disk whole."""


class PooledThreadsASGIHandler(ASGIHandler):
    """Django's ASGI handler, with each request's synchronous code (middleware, DRF views, the ORM)
    run on a long-lived thread instead of one made for the request.

    Django gives every request a fresh thread (a new `ThreadSensitiveContext`), and with it a fresh
    database connection, since connections belong to threads: `DB_CONN_MAX_AGE` could never keep
    one, and each request paid for a thread and a connection. Here a request borrows a
    one-thread executor from a free list (the event loop's own, so no lock) and gives it back when
    it is done; all its synchronous code still runs on that one thread, as Django requires. A
    long response (a server-sent event stream) simply holds its thread, and the list grows.
    """

    max_idle_threads = 64

    def __init__(self):
        super().__init__()
        self._idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # Django's own refusal
        if _declared_length(scope) > largest_body():
            return await self._too_large(scope, send)
        executor = (
            self._idle.pop()
            if self._idle
            else ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        )
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        except BodyTooLarge:
            # read_body stopped at the limit (a body longer than declared, or chunked)
            await self._too_large(scope, send)
        finally:
            if len(self._idle) < self.max_idle_threads:
                self._idle.append(executor)
            else:
                executor.shutdown(wait=False)

    async def read_body(self, receive):
        """Django's, stopping at largest_body(): Django spools the whole body to a temporary file
        before any middleware or view runs, so a route's own limit would come after the disk has
        filled."""
        limit, read = largest_body(), 0
        body_file = tempfile.SpooledTemporaryFile(
            max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b"
        )
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            read += len(chunk)
            if read > limit:
                body_file.close()
                raise BodyTooLarge()
            body_file.write(chunk)
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file

    async def _too_large(self, scope, send) -> None:
        from django.http import HttpRequest

        from verticals.api.errors import error_response  # (Django is set up by now, not at import)

        request = HttpRequest()
        request.path = scope.get("path", "")
        response = error_response(
            request,
            413,
            "request_too_large",
            f"The request body is larger than {largest_body()} bytes, more than any route reads "
            "(an upload takes REGISTRY_MAX_UPLOAD_BYTES, a predict call SERVING_MAX_BODY_BYTES).",
        )
        response["Connection"] = "close"  # the rest of the body is not read
        await self.send_response(response, send)

    async def listen_for_disconnect(self, receive):
        """Django's, returning on a disconnect instead of raising RequestAborted.

        Django 5.2's `handle` treats both alike: whichever of this task and the request's finishes
        first, it cancels the other and ignores the disconnect. But the raised exception, kept by
        the finished task, holds `handle`'s frame in its traceback, and the frame holds the tasks:
        a reference cycle that keeps the request, its parsed body and the response alive until a
        full garbage collection happens to run (uvicorn reports the disconnect as soon as the
        response is sent, so it was every request). With DRF's own cycle (see the predict view's
        `_drop_body`), it kept the web process about 90 MB above idle after a few 11 MB predict
        calls. (Django 6.1 rewrites `handle` around a TaskGroup, where only a raising listener cancels the
        request; see it again before upgrading.)"""
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        assert False, "Invalid ASGI message after request body: %s" % message["type"]  # noqa: B011, UP031  (Django's check)


def _declared_length(scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return (
                int(value)
                if value.isdigit() and len(value) <= 18
                else (0 if not value.isdigit() else 2**63)
            )
    return 0


def get_application() -> PooledThreadsASGIHandler:
    import django

    from verticals.serving import memory  # (after django.setup(): it reads settings)

    memory.fix_mmap_threshold()  # a request's large buffers go back to the system when freed
    django.setup(set_prefix=False)
    return PooledThreadsASGIHandler()


application = get_application()
