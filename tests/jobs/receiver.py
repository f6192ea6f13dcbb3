"""A webhook receiver for tests: an HTTP server on 127.0.0.1, in a thread of the test process."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """Records every POST ({path, headers (lower-case names), body, status, at}).

    Answers: the `codes` given, one per request, first (a 3xx comes with a Location elsewhere);
    then by path: `/flaky/...` answers 500 to the first try of each message (by its webhook-id)
    and 200 to the next; any other path 200. Use it as a context manager, or start()/stop().
    """

    def __init__(self, codes=()):
        self.codes = list(codes)
        self.received: list[dict] = []
        self._lock = threading.Lock()
        self._tries: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver._answer(self.path, headers)
                with receiver._lock:
                    receiver.received.append(
                        {
                            "path": self.path,
                            "headers": headers,
                            "body": body,
                            "status": status,
                            "at": time.time(),
                        }
                    )
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="webhook-receiver",
            daemon=True,
        )

    def _answer(self, path: str, headers: dict) -> int:
        with self._lock:
            if self.codes:
                return self.codes.pop(0)
            if path.startswith("/flaky"):
                key = headers.get("webhook-id", "")
                self._tries[key] = self._tries.get(key, 0) + 1
                return 500 if self._tries[key] == 1 else 200
        return 200

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{path.lstrip('/')}"

    def start(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def messages(self, path_prefix: str = "/") -> list[dict]:
        with self._lock:
            return [m for m in self.received if m["path"].startswith(path_prefix)]
