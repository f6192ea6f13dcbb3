"""Hostile uploads, and a way to watch what ingesting one costs.

The builders make small files that expand to a lot, cheaply: a zip member of N zero bytes is
written as one deflated 1 MiB block of zeros repeated (each block compressed on its own, so
the 1,037 bytes of one are valid anywhere in the stream), so a 2 GiB member takes 2.1 MB and
about a second (its CRC-32) to make. `bounded_run` ingests files through the platform's services
in a fresh process over a migrated SQLite platform, and reports the process's resident memory:
idle (everything imported, a tenant made), its peak while ingesting and after; a file-size
limit on the process (RLIMIT_FSIZE) kills it if it writes any file past the limit.

The bounded-ingestion tests use these; the memory benchmark and the live-server RSS test can
import them too (`from tests.registry.hostile import ...`).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import zlib
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB
ROOT = Path(__file__).resolve().parents[2]


# --- zip archives of zeros ---------------------------------------------------------------------


@dataclass(frozen=True)
class Zeros:
    """A member's content: `head` then zero bytes, `size` bytes in all."""

    size: int
    head: bytes = b""


@functools.cache
def _zero_block() -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(bytes(MiB)) + packer.flush(zlib.Z_FULL_FLUSH)


@functools.cache
def _zero_crc(size: int, head: bytes) -> int:
    crc = zlib.crc32(head)
    block = bytes(MiB)
    left = size - len(head)
    while left:
        take = min(left, MiB)
        crc = zlib.crc32(block[:take] if take < MiB else block, crc)
        left -= take
    return crc


def _deflated(content: bytes | Zeros) -> tuple[bytes, int, int]:
    """(raw deflate stream, CRC-32, size) of a member's content."""
    if isinstance(content, bytes):
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return packer.compress(content) + packer.flush(), zlib.crc32(content), len(content)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [packer.compress(content.head) + packer.flush(zlib.Z_FULL_FLUSH)]
    whole, rest = divmod(content.size - len(content.head), MiB)
    parts.append(_zero_block() * whole)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts.append(tail.compress(bytes(rest)) + tail.flush())  # the final block
    return b"".join(parts), _zero_crc(content.size, content.head), content.size


def zip_file(
    path: Path, members: dict[str, bytes | Zeros], *, declared: dict[str, int] | None = None
) -> Path:
    """A zip archive of deflated members (each under 4 GiB). `declared` gives a member a size in
    its headers other than its real one (a forged archive)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    central = []
    with path.open("wb") as out:
        for name, content in members.items():
            data, crc, size = _deflated(content)
            size = (declared or {}).get(name, size)
            assert size < 2**32 and len(data) < 2**32, "zip64 is not needed by these tests"
            encoded = name.encode()
            offset = out.tell()
            fields = (20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0)
            out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + encoded)
            out.write(data)
            central.append(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    0x0314,
                    *fields,
                    0,
                    0,
                    0,
                    0o100644 << 16,
                    offset,
                )
                + encoded
            )
        start = out.tell()
        listing = b"".join(central)
        out.write(listing)
        out.write(
            struct.pack(
                "<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(listing), start, 0
            )
        )
    return path


# --- the hostile uploads of the issue ---------------------------------------------------------


def image_bomb_zip(path: Path, *, bombs: int = 1, size: int = 2 * GiB) -> Path:
    """An image-dataset zip of `bombs` zero-filled "png" files of `size` bytes each (2.1 MB a bomb)."""
    return zip_file(path, {f"cats/bomb-{i}.png": Zeros(size) for i in range(bombs)})


def text_csv(path: Path, *, rows: int) -> Path:
    """A valid sentiment CSV of `rows` rows (~84 bytes each: 1.2 M rows make 100 MB)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = "This is review number {:>9} and it says the product works as it should,{}\n"
    with path.open("w", encoding="utf-8") as out:
        out.write("text,label\n")
        for i in range(rows):
            out.write(line.format(i, "positive" if i % 2 else "negative"))
    return path


def safetensors_file(
    tensors: dict[str, tuple[str, list[int]]], *, data: int | None = None
) -> bytes:
    """The header of a safetensors file holding `tensors` (name: (dtype, shape), contiguous) and,
    unless `data` says how many, all of its data bytes (zeros)."""
    bits = {"F32": 32, "F16": 16, "BF16": 16, "I64": 64, "U8": 8}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = bits[dtype] // 8
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset if data is None else data)


def safetensors_head(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """A safetensors header alone (to be followed by the zeros of its data: `Zeros(size, head)`)."""
    return safetensors_file(tensors, data=0)


PICKLE_BYTES = (
    b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94."
)
HUGE_HEADER_LENGTH = struct.pack("<Q", 2**62) + b"{}" + bytes(64)
CLAIMS_40_GB = safetensors_file({"weight": ("F32", [10_000, 1_000_000])}, data=1024)


def zeros_weights_zip(path: Path, config: bytes, *, size: int = 3 * GiB) -> Path:
    """A model zip whose model.safetensors is `size` zero bytes (3.1 MB for 3 GiB)."""
    return zip_file(path, {"config.json": config, "model.safetensors": Zeros(size)})


def big_weights_zip(path: Path, config: bytes, *, size: int = 3 * GiB) -> Path:
    """A model zip whose model.safetensors is a well-formed safetensors file of `size` bytes (one
    tensor of zeros): what stops it is the extraction limit, not its header."""
    head = b""
    for _ in range(3):  # the header's length depends on the digits of the tensor's size: settle it
        head = safetensors_head({"weight": ("U8", [size - len(head)])})
    assert len(safetensors_head({"weight": ("U8", [size - len(head)])})) == len(head)
    return zip_file(path, {"config.json": config, "model.safetensors": Zeros(size, head)})


def model_zip(path: Path, files: dict[str, bytes], **extra: bytes | Zeros) -> Path:
    """A model directory's files (and `extra` members) as a zip."""
    return zip_file(path, {**files, **extra})


# --- watching a process -----------------------------------------------------------------------

_PRELUDE = """
import json, os, resource, signal, sys, traceback
from pathlib import Path
import django
django.setup()
import numpy, PIL.Image, safetensors, torch  # noqa: F401  (what a web process has imported once it has recognized a model)
from verticals.registry import archives, services, storage  # noqa: F401
from verticals.sdk import discovery
from verticals.tenancy.scoping import tenant_context
from verticals.tenancy.services import partner_root, project_create, tenant_create

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

tenant = tenant_create(partner=partner_root(), name=f"bounded {os.getpid()}")
with tenant_context(tenant):
    project = project_create(tenant=tenant, name="bounded")
discovery.tasks()
from django.test import override_settings
limit = int(os.environ["BOUNDED_FILE_LIMIT"])
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it: a write past the limit now ends the process
# An ingestion that grows past this much address space fails (MemoryError) instead of taking the machine.
# (The soft limit only: a child it starts, such as an imported model's load check, sets its own.)
cap = status("VmSize") * 1024 + int(os.environ["BOUNDED_MEMORY_CAP"])
resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
results = []
for case in json.loads(os.environ["BOUNDED_CASES"]):
    idle = status("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # the peak counts from here
    outcome = {}
    try:
        with tenant_context(tenant), override_settings(**case.get("settings", {})):
            if case["kind"] == "dataset":
                version = services.dataset_upload(project=project, caller=None, upload=Path(case["path"]), task=case["task"],
                                                  name=case.get("name", ""))
                outcome = {"stored": True, "rows": version.rows}
            else:
                version = services.model_import(project=project, caller=None, task=case["task"], upload=Path(case["path"]))
                outcome = {"stored": True, "files": [f["name"] for f in version.files]}
    except services.UploadRejected as exc:
        outcome = {"stored": False, "message": exc.message_text, "problems": exc.problems}
    except Exception:
        outcome = {"stored": False, "error": traceback.format_exc()}
    results.append({**outcome, "idle_kb": idle, "peak_kb": status("VmHWM"), "after_kb": status("VmRSS")})
print("BOUNDED " + json.dumps(results))
"""


@functools.cache
def _migrated_platform() -> Path:
    """A var folder with a migrated SQLite database, made once per test session."""
    var = Path(tempfile.mkdtemp(prefix="bounded-platform-"))
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env=_env(var),
        check=True,
        capture_output=True,
    )
    return var


def _env(var: Path) -> dict:
    env = {
        **os.environ,
        "VERTICALS_VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",
        "DEBUG": "1",
        "DJANGO_SETTINGS_MODULE": "verticals.config.settings",
        "TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "platform"), str(ROOT / "plugins"), str(ROOT), env.get("PYTHONPATH", "")]
    )
    return env


def bounded_run(
    cases: list[dict], *, file_limit: int = 0, memory_cap: int = 2 * GiB, timeout: float = 300
) -> list[dict]:
    """Ingest each case (`{"kind": "dataset" | "model", "task": …, "path": …, "settings": {…}}`) in
    one fresh process, through dataset_upload or model_import (with those settings), and report for
    each: `stored`, the refusal's `message` and `problems` (or an unexpected `error`), and the
    process's resident memory in kB: `idle_kb` before it, `peak_kb` while it ran, `after_kb` after
    it. With `file_limit`, the process may write no file past that many bytes (it is killed if it
    tries: an AssertionError here); past `memory_cap` bytes of address space above idle, an
    ingestion fails with a MemoryError (reported as its `error`) rather than take the machine."""
    var = _migrated_platform()
    env = {
        **_env(var),
        "BOUNDED_FILE_LIMIT": str(file_limit),
        "BOUNDED_MEMORY_CAP": str(memory_cap),
        "BOUNDED_CASES": json.dumps(cases),
    }
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PRELUDE)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode != -signal.SIGXFSZ, (
        f"the ingesting process wrote a file past {file_limit} bytes"
    )
    assert done.returncode == 0, (
        f"the ingesting process ended with {done.returncode}:\n{done.stderr[-3000:]}"
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("BOUNDED "))
    return json.loads(line[len("BOUNDED ") :])
