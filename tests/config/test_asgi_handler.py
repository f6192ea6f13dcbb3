"""The ASGI application: each request's synchronous code runs on a long-lived thread borrowed for
the request — threads (and with them database connections) are reused, requests stay concurrent."""

import asyncio
import json
import threading

from django.contrib import admin
from django.http import JsonResponse
from django.urls import path

from verticals.config.asgi import PooledThreadsASGIHandler

released = threading.Event()
_thread = threading.local()
_threads_seen = iter(range(1, 1_000_000))


def thread_mark() -> int:
    """A number per thread (thread idents can be reused once a thread ends; this cannot)."""
    if not hasattr(_thread, "mark"):
        _thread.mark = next(_threads_seen)
    return _thread.mark


def who(request):
    return JsonResponse({"thread": thread_mark()})


def wait(request):
    # Blocks its thread until another request releases it: both must run at once.
    return JsonResponse({"released": released.wait(timeout=10), "thread": thread_mark()})


def release(request):
    released.set()
    return JsonResponse({"thread": thread_mark()})


urlpatterns = [
    path("who", who),
    path("wait", wait),
    path("release", release),
    path("admin/", admin.site.urls),
]


async def get(app, url: str) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": url,
        "raw_path": url.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    incoming = [{"type": "http.request", "body": b"", "more_body": False}]
    sent = []

    async def receive():
        if incoming:
            return incoming.pop()
        await asyncio.sleep(3600)  # the client stays connected

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_requests_reuse_threads_and_run_concurrently(settings):
    settings.ROOT_URLCONF = __name__
    app = PooledThreadsASGIHandler()
    released.clear()

    async def concurrent():
        waiting = asyncio.ensure_future(get(app, "/wait"))
        await asyncio.sleep(0.2)
        freeing = await get(app, "/release")
        return await waiting, freeing

    first, second = asyncio.run(_one_after_another(app))
    assert first[0] == second[0] == 200
    assert json.loads(first[1])["thread"] == json.loads(second[1])["thread"], (
        "one idle thread serves one request after another"
    )

    waited, freed = asyncio.run(concurrent())
    assert waited[0] == freed[0] == 200
    assert json.loads(waited[1])["released"] is True, (
        "a request blocked in its view held up the other one"
    )
    assert json.loads(waited[1])["thread"] != json.loads(freed[1])["thread"]


async def _one_after_another(app):
    return await get(app, "/who"), await get(app, "/who")


def test_an_idle_thread_list_has_a_bound(settings):
    settings.ROOT_URLCONF = __name__
    app = PooledThreadsASGIHandler()
    app.max_idle_threads = 1
    released.clear()

    async def two_at_once():
        waiting = [asyncio.ensure_future(get(app, "/wait")) for _ in range(2)]
        await asyncio.sleep(0.2)
        await get(app, "/release")
        return await asyncio.gather(*waiting)

    answers = asyncio.run(two_at_once())
    assert all(status == 200 for status, _ in answers)
    assert len(app._idle) == 1


async def post(app, url: str, chunks: list[bytes], declared: int | None) -> tuple[int, bytes, int]:
    """(status, body, chunks the server read) of a POST sent in `chunks`, with a Content-Length or chunked."""
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": url,
        "raw_path": url.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    queue = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    read, sent = 0, []

    async def receive():
        nonlocal read
        if queue:
            read += 1
            return queue.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), read


def test_a_body_over_what_any_route_reads_is_413_before_it_is_read(settings):
    # Django's ASGI handler spools the whole body to disk before any middleware or view: a declared
    # length over the largest route's limit is refused before one byte is read.
    settings.ROOT_URLCONF = __name__
    settings.REGISTRY_MAX_UPLOAD_BYTES = 100_000
    app = PooledThreadsASGIHandler()
    status, body, read = asyncio.run(
        post(app, "/api/v1/projects/", [b"x" * 1000] * 3, declared=10**12)
    )
    assert (status, read) == (413, 0)
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large" and "larger than" in error["message"]
    status, body, read = asyncio.run(
        post(app, "/v1/chat/completions", [b"x"], declared=int("9" * 30))
    )
    assert (
        status == 413 and json.loads(body)["error"]["type"] == "invalid_request_error"
    )  # OpenAI's shape under /v1/


def test_a_chunked_body_stops_being_read_at_the_limit(settings):
    settings.ROOT_URLCONF = __name__
    settings.REGISTRY_MAX_UPLOAD_BYTES = 100_000
    settings.SERVING_MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    app = PooledThreadsASGIHandler()
    status, body, read = asyncio.run(post(app, "/who", [b"x" * 50_000] * 100, declared=None))
    assert status == 413 and json.loads(body)["error"]["code"] == "request_too_large"
    assert read == 4, (
        "it read past the limit"
    )  # 4 × 50,000 bytes > 100,000 + the envelope allowance
    status, _, read = asyncio.run(post(app, "/who", [b"{}"], declared=2))
    assert status != 413 and read == 1  # a small body goes on to the view (here, its CSRF check)
