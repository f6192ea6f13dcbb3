"""A live platform whose memory is watched: the server as docker/compose.yaml runs it (gunicorn with
one uvicorn worker: one web process and its inference process), the resident memory (RSS) of both
processes, and the hostile inputs each must refuse (or serve) within a fixed budget above idle.

The memory test (tests/serving/test_memory.py) and the memory benchmark (bench/memory.py) both use
it, so they send the same inputs and read the same numbers.

A process's peak during a call is the kernel's high-water mark (`VmHWM` in /proc/PID/status),
reset before the call by writing 5 to /proc/PID/clear_refs: every page the process touched counts,
however briefly, which a sampling thread could miss.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import random
import struct
import time
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.processes import fresh_env, manage, process_table, production_server

MB = 1024 * 1024
BUDGET = 512 * MB  # a process may grow at most this much above idle during any call
SETTLED = 64 * MB  # … and must be back within this much of idle afterwards
SETTLE_SECONDS = 10.0  # how long "afterwards" may take

PREDICT = "/api/v1/projects/{project}/models/{model}/predict"
DATASETS = "/api/v1/projects/{project}/datasets/"
MODELS = "/api/v1/projects/{project}/models/"

# --- resident memory of a process, from /proc ---------------------------------------------------


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(f"{key} not in /proc/{pid}/status")


def rss(pid: int) -> int:
    return _status(pid, "VmRSS")


def peak(pid: int) -> int:
    return _status(pid, "VmHWM")


def reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # the high-water mark starts again from the current RSS


def _children(pid: int) -> list[tuple[int, str]]:
    return [
        (child, command)
        for child, (parent, command, _fields) in process_table().items()
        if parent == pid
    ]


# --- hostile images, built without holding them decoded -------------------------------------------


def zero_png(width: int, height: int) -> bytes:
    """A black RGB PNG of width×height built row by row: a few kilobytes per million pixels
    (6300×6300 in about 120 kB), never the whole bitmap in this process."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    packer = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0, then the row's pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def noise_png(side: int, seed: int) -> bytes:
    """A side×side PNG of random pixels (it hardly compresses: about 3 bytes a pixel)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(side * side * 3)).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- requests and cases ---------------------------------------------------------------------------


@dataclass
class Request:
    """One HTTP call; its body is bytes and files, the files read as they are sent."""

    method: str
    path: str  # {project} and {model} are filled in
    parts: list[bytes | Path]
    content_type: str = "application/json"

    def length(self) -> int:
        return sum(
            part.stat().st_size if isinstance(part, Path) else len(part) for part in self.parts
        )

    def body(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, Path):
                with part.open("rb") as source:
                    yield from iter(lambda: source.read(MB), b"")
            else:
                yield part


def json_request(path: str, value) -> Request:
    return Request("POST", path, [json.dumps(value).encode()])


def upload(path: str, fields: dict[str, str], file: Path, filename: str = "") -> Request:
    """A multipart upload of `file` (streamed from disk) with form `fields`."""
    boundary = uuid.uuid4().hex
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename or file.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return Request(
        "POST",
        path,
        [head.encode(), file, f"\r\n--{boundary}--\r\n".encode()],
        f"multipart/form-data; boundary={boundary}",
    )


@dataclass
class Case:
    """A hostile input: what it is, its request (made when it is sent), the statuses allowed."""

    name: str
    request: Callable[[], Request]
    expected: tuple[int, ...]
    at_once: int = 1  # copies sent together, each on its own connection


@dataclass
class Measured:
    case: Case
    status: int
    message: str
    idle: dict[str, int]
    peak: dict[str, int]
    after: dict[str, int]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def above(self, which: str, role: str) -> int:
        """Bytes of `which` ("peak" or "after") above idle, for "web" or "inference"."""
        return getattr(self, which)[role] - self.idle[role]

    def problems(self) -> list[str]:
        """What misses the targets, in words (empty when the case met them all)."""
        found = list(self.notes)
        if self.status not in self.case.expected:
            found.append(
                f"answered {self.status} ({self.message[:200]}), expected {self.case.expected}"
            )
        for role in self.idle:
            if self.above("peak", role) >= BUDGET:
                found.append(
                    f"{role} process peaked {self.above('peak', role) / MB:.0f} MB above idle"
                )
            if self.above("after", role) >= SETTLED:
                found.append(
                    f"{role} process stayed {self.above('after', role) / MB:.0f} MB above idle"
                )
        return found


def predict_cases() -> list[Case]:
    """The predict calls that once took gigabytes, as they were measured then."""
    big = b64(zero_png(6300, 6300))  # 39.7 million pixels in about 160 kB of base64

    def images(count: int) -> Callable[[], Request]:
        return lambda: json_request(PREDICT, {"inputs": [big] * count})

    def noisy() -> Request:
        # Over the 5 MB that Django reads for other routes, under the predict limit: eight noisy
        # 600×600 PNGs (they do not compress).
        return json_request(PREDICT, {"inputs": [b64(noise_png(600, seed)) for seed in range(8)]})

    return [
        Case("predict: one 6300×6300 PNG", images(1), (200,)),
        Case("predict: 8 × 6300×6300 PNG (1.3 MB)", images(8), (400,)),
        Case("predict: 16 × 6300×6300 PNG (2.6 MB)", images(16), (400,)),
        Case("predict: 11 MB JSON of base64 images", noisy, (200,)),
        Case("predict: six 11 MB JSON bodies at once", noisy, (200,), at_once=6),
        # Each within the limit, refused only once parsed (an "image" of 22 MB): what the calls
        # in progress may hold together is bounded, not only what one may hold.
        Case(
            "predict: twelve 30 MB bodies at once",
            lambda: json_request(PREDICT, {"inputs": ["A" * (30 * MB)]}),
            (400,),
            at_once=12,
        ),
        Case(
            "predict: 33 MB body (over the limit)",
            lambda: json_request(PREDICT, {"inputs": ["A" * (33 * MB)]}),
            (413,),
        ),
    ]


def upload_cases(folder: Path, model_dir: Path) -> list[Case]:
    """The uploads that once took gigabytes of memory or disk (built by tests.registry.hostile)."""
    from tests.registry.hostile import (
        PICKLE_BYTES,
        image_bomb_zip,
        model_zip,
        text_csv,
        zeros_weights_zip,
    )

    folder.mkdir(parents=True, exist_ok=True)
    config = (model_dir / "config.json").read_bytes()
    model = {item.name: item.read_bytes() for item in model_dir.iterdir()}
    images = {"task": "image-classification"}
    files = {
        "one bomb": image_bomb_zip(folder / "one-bomb.zip"),
        "two bombs": image_bomb_zip(folder / "two-bombs.zip", bombs=2),
        "csv": text_csv(folder / "reviews.csv", rows=1_200_000),
        "zeros": zeros_weights_zip(folder / "zero-weights.zip", config),
        "decoy": model_zip(
            folder / "decoy.zip", model, **{"extra_weights.safetensors": PICKLE_BYTES}
        ),
    }

    def sent(route: str, fields: dict, name: str) -> Callable[[], Request]:
        return lambda: upload(route, fields, files[name])

    return [
        Case(
            "dataset: zip of one 2 GiB zero png (2.1 MB)",
            sent(DATASETS, images, "one bomb"),
            (400,),
        ),
        Case(
            "dataset: zip of two 2 GiB zero pngs (4.2 MB)",
            sent(DATASETS, images, "two bombs"),
            (400,),
        ),
        Case(
            "dataset: 100 MB CSV (1.2 M rows)", sent(DATASETS, {"task": "sentiment"}, "csv"), (201,)
        ),
        Case(
            "model: zip expanding to a 3 GiB model.safetensors",
            sent(MODELS, images, "zeros"),
            (400,),
        ),
        Case(
            "model: valid model plus pickle extra_weights.safetensors",
            sent(MODELS, images, "decoy"),
            (400,),
        ),
    ]


# --- the live platform ----------------------------------------------------------------------------


class LivePlatform:
    """`with LivePlatform(tmp, model_dir) as live:` a migrated platform under gunicorn + uvicorn on a
    SQLite file, a tenant on the enterprise plan with an API key, the image classifier saved in
    `model_dir` imported through the API, and every route used once (so that what a first call
    imports or starts is part of idle); `live.measure(case, idle)` sends one input and watches
    both processes."""

    def __init__(self, tmp: Path, model_dir: Path, **env: str):
        self.tmp, self.model_dir = tmp, model_dir
        self.env = fresh_env(
            tmp,
            DEBUG="0",
            ALLOWED_HOSTS="127.0.0.1",
            SECRET_KEY="memory-" + "x" * 50,
            SECURE_SSL_REDIRECT="0",
            TORCH_THREADS="1",
            OMP_NUM_THREADS="1",
        )
        for name in [
            n for n in self.env if n.startswith(("SERVING_", "REGISTRY_", "DATA_UPLOAD_"))
        ]:
            del self.env[name]  # the defaults, as a deployment that sets nothing runs them
        self.env.update(env)
        self.project = self.model = self.key = ""
        self.web_pid = self.inference_pid = 0

    def __enter__(self) -> LivePlatform:
        manage(self.env, "migrate", "--noinput")
        world = json.loads(
            manage(
                self.env,
                "bootstrap",
                "--partner",
                "Memory",
                "--tenant",
                "Memory",
                "--email",
                "memory@example.com",
                "--plan",
                "enterprise",
            )
        )
        self.key, self.project = world["api_key"], world["project"]["id"]
        self.server = production_server(self.env)
        self.port = int(self.server.__enter__().rsplit(":", 1)[1])
        try:
            self._warm_up()
        except BaseException:
            self.server.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.server.__exit__(*exc)

    def send(self, request: Request, timeout: float = 600) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(
                request.method,
                request.path.format(project=self.project, model=self.model),
                body=request.body(),
                headers={
                    "Authorization": f"Bearer {self.key}",
                    "Content-Type": request.content_type,
                    "Content-Length": str(request.length()),
                },
            )
            answer = connection.getresponse()
            raw = answer.read()
        except (BrokenPipeError, ConnectionResetError):  # refused before the whole body was sent
            answer = connection.getresponse()
            raw = answer.read()
        finally:
            connection.close()
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError:
            decoded = {"raw": raw[:300].decode(errors="replace")}
        return answer.status, decoded

    def _expect(self, request: Request, status: int) -> dict:
        answer, body = self.send(request)
        if answer != status:
            raise RuntimeError(
                f"{request.method} {request.path} answered {answer}, not {status}: {body}"
            )
        return body

    def _warm_up(self) -> None:
        archive = self.tmp / "warm-model.zip"
        with zipfile.ZipFile(archive, "w") as bundle:
            for item in sorted(self.model_dir.iterdir()):
                bundle.write(item, item.name)
        self.model = self._expect(
            upload(MODELS, {"task": "image-classification", "name": "tiny"}, archive), 201
        )["id"]
        for side in (24, 300, 24):
            self._expect(json_request(PREDICT, {"inputs": [b64(noise_png(side, side))] * 2}), 200)
        reviews = self.tmp / "warm.csv"
        reviews.write_text(
            "text,label\n"
            + "".join(f"review {i},{('negative', 'positive')[i % 2]}\n" for i in range(40))
        )
        self._expect(upload(DATASETS, {"task": "sentiment", "name": "warm"}, reviews), 201)
        pictures = self.tmp / "warm-images.zip"
        with zipfile.ZipFile(pictures, "w") as bundle:
            for i in range(12):
                bundle.writestr(f"{('cats', 'dogs')[i % 2]}/{i}.png", noise_png(16, i))
        self._expect(
            upload(DATASETS, {"task": "image-classification", "name": "warm images"}, pictures), 201
        )
        self._find_processes()

    def _find_processes(self) -> None:
        workers = [
            pid
            for pid, command in _children(self.server.process.pid)
            if "spawn_main" not in command
        ]
        if len(workers) != 1:
            raise RuntimeError(f"expected one web process under gunicorn, found {workers}")
        self.web_pid = workers[0]
        inference = [pid for pid, command in _children(self.web_pid) if "spawn_main" in command]
        if len(inference) != 1:
            raise RuntimeError(
                f"expected one inference process under the web process, found {inference}"
            )
        self.inference_pid = inference[0]

    def pids(self) -> dict[str, int]:
        return {"web": self.web_pid, "inference": self.inference_pid}

    def idle(self, seconds: float = 5.0) -> dict[str, int]:
        """Both processes' RSS once it stopped falling (at most `seconds`)."""
        deadline = time.monotonic() + seconds
        last = {role: rss(pid) for role, pid in self.pids().items()}
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = {role: rss(pid) for role, pid in self.pids().items()}
            if all(now[role] >= last[role] - MB for role in now):
                return now
            last = now
        return last

    def measure(self, case: Case, idle: dict[str, int]) -> Measured:
        """Send the case's request; both processes' peak RSS during it and their RSS after it has
        settled (back within SETTLED of idle, or SETTLE_SECONDS passed)."""
        request = case.request()
        pids = self.pids()
        for pid in pids.values():
            reset_peak(pid)
        started = time.monotonic()
        with ThreadPoolExecutor(case.at_once) as pool:
            answers = list(pool.map(self.send, [request] * case.at_once))
        seconds = time.monotonic() - started
        del request
        status, body = next(
            (answer for answer in answers if answer[0] not in case.expected), answers[0]
        )
        peaks = {role: peak(pid) for role, pid in pids.items()}
        notes = []
        self._find_processes()
        if self.pids() != pids:
            notes.append("the inference process was started again during the call")
        deadline = time.monotonic() + SETTLE_SECONDS
        after = {role: rss(pid) for role, pid in self.pids().items()}
        while time.monotonic() < deadline and any(
            after[role] - idle[role] >= SETTLED for role in after
        ):
            time.sleep(0.25)
            after = {role: rss(pid) for role, pid in self.pids().items()}
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message", "") if isinstance(error, dict) else ""
        return Measured(case, status, message, idle, peaks, after, seconds, notes)
