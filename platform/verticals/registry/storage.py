"""Files of datasets and models in the `artifacts` storage, and local copies for the processes
that read them (training workers, serving). Storage goes through Django's storage API, so the
same code runs on the local filesystem and on S3-compatible storage."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages

_copy_lock = threading.Lock()


def artifacts():
    return storages["artifacts"]


def store_tree(local_dir: Path, prefix: str) -> list[dict]:
    """Save every file under `local_dir` at `prefix/<relative path>`; return [{name, bytes}]."""
    storage = artifacts()
    stored = []
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(local_dir).as_posix()
        with path.open("rb") as handle:
            name = storage.save(f"{prefix}/{relative}", File(handle, name=relative))
        if name != f"{prefix}/{relative}":  # the prefix is new for each row: a clash means a bug
            storage.delete(name)
            raise RuntimeError(f"storage renamed {prefix}/{relative} to {name}")
        stored.append({"name": relative, "bytes": path.stat().st_size})
    return stored


def delete_prefix(prefix: str) -> None:
    """Remove everything stored under `prefix` (used when a write fails half-way, and on delete)."""
    storage = artifacts()
    local = _local_path(prefix)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    directories, files = _listdir(storage, prefix)
    for name in files:
        storage.delete(f"{prefix}/{name}")
    for directory in directories:
        delete_prefix(f"{prefix}/{directory}")


def _listdir(storage, prefix):
    try:
        return storage.listdir(prefix)
    except FileNotFoundError:
        return [], []


def _local_path(prefix: str) -> Path | None:
    try:
        return Path(artifacts().path(prefix))
    except NotImplementedError:  # remote storage: no local path
        return None


def local_copy(prefix: str, files: list[dict] | Callable[[], list[dict]]) -> Path:
    """A local directory holding the stored files: the storage's own directory on the local
    filesystem, else a copy under REGISTRY_CACHE_DIR made once per process tree. `files` may be
    a function listing them: it is called only when a copy is made."""
    local = _local_path(prefix)
    if local is not None:
        return local
    target = Path(settings.REGISTRY_CACHE_DIR) / prefix
    done = target / ".complete"
    with _copy_lock:
        if not done.exists():
            if callable(files):
                files = files()
            staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=_mkdir(target.parent)))
            for entry in files:
                destination = staging / entry["name"]
                destination.parent.mkdir(parents=True, exist_ok=True)
                with (
                    artifacts().open(f"{prefix}/{entry['name']}", "rb") as source,
                    destination.open("wb") as sink,
                ):
                    shutil.copyfileobj(source, sink)
            (staging / ".complete").touch()
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
    return target


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def removed_on_failure(prefix: str) -> Iterator[None]:
    """Whatever was stored under `prefix` is removed when the block fails: nothing half-written stays."""
    try:
        yield
    except BaseException:
        delete_prefix(prefix)
        raise


@contextmanager
def workspace(label: str) -> Iterator[Path]:
    """A private temporary directory (under the registry cache, on the same disk), removed on exit."""
    path = Path(
        tempfile.mkdtemp(prefix=f"{label}-", dir=_mkdir(Path(settings.REGISTRY_CACHE_DIR) / "tmp"))
    )
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(directory: Path) -> str:
    """The digest of a stored model: sha256 of its manifest, one line `<sha256 of the file>  <path>`
    for every file under `directory`, sorted by path (UTF-8 bytes), each line ending in a line
    break. It is what `sha256sum` prints for those files in that order, so
    `cd DIR && find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum`
    gives it too. Names and contents of every file count: two models differ in it if any file does."""
    files = sorted(
        (p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()),
        key=str.encode,
    )
    manifest = "".join(f"{sha256_of(directory / name)}  {name}\n" for name in files)
    return hashlib.sha256(manifest.encode()).hexdigest()


def open_stored(prefix: str, name: str):
    return artifacts().open(f"{prefix}/{name}", "rb")
