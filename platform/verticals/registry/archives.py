"""Model archives and directories: safe extraction, and the safetensors-only rule.

A pickle-based checkpoint can run code when it is loaded, so none is ever stored or loaded:
an archive holding one is refused with the command that converts it.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

from verticals.sdk.datasets import safe_member_path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
ALLOWED_SUFFIXES = (".safetensors", ".json", ".txt", ".model", ".md", ".jinja", ".tiktoken")
ALLOWED_NAMES = ("LICENSE", "README", "NOTICE", ".gitattributes")
CONVERT_HINT = (
    "Convert it to safetensors first, in a trusted environment: for a Hugging Face model, "
    "`AutoModel.from_pretrained(dir).save_pretrained(out, safe_serialization=True)`; for a "
    "torchvision/PyTorch state dict, `safetensors.torch.save_file(torch.load(path, weights_only=True), "
    "'model.safetensors')` with a config.json naming the architecture."
)


class ArchiveRefused(ValueError):
    """The archive or directory cannot be imported; the message says why and what to do."""


def extract(archive: Path, destination: Path, *, max_bytes: int, max_files: int = 10_000) -> Path:
    """Extract a .zip or .tar(.gz) model archive safely; return the model's root directory
    (the folder holding config.json, even when the archive wraps it in one folder)."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        _extract_zip(archive, destination, max_bytes, max_files)
    elif name.endswith((".tar", ".tar.gz", ".tgz")):
        _extract_tar(archive, destination, max_bytes, max_files)
    else:
        raise ArchiveRefused(f"'{archive.name}' is not a model archive; upload a .zip or .tar.gz of the model's directory.")
    return model_root(destination)


def _member_path(name: str) -> str:
    normal = safe_member_path(name)
    if normal is None:
        raise ArchiveRefused(f"The archive names an unsafe path {name!r} (absolute, or leaving the archive).")
    return normal


def _extract_zip(archive: Path, destination: Path, max_bytes: int, max_files: int) -> None:
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveRefused(f"The file is not a readable zip archive ({exc}).") from exc
    with bundle:
        members = [m for m in bundle.infolist() if not m.is_dir()]
        _check_sizes(len(members), sum(m.file_size for m in members), max_bytes, max_files)
        for member in members:
            target = destination / _member_path(member.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(member) as source, target.open("wb") as sink:
                _copy_capped(source, sink, member.file_size)


def _extract_tar(archive: Path, destination: Path, max_bytes: int, max_files: int) -> None:
    try:
        bundle = tarfile.open(archive)
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveRefused(f"The file is not a readable tar archive ({exc}).") from exc
    with bundle:
        members = bundle.getmembers()
        for member in members:
            if not (member.isfile() or member.isdir()):
                raise ArchiveRefused(f"The archive holds {member.name!r}, which is not a regular file (links are refused).")
        files = [m for m in members if m.isfile()]
        _check_sizes(len(files), sum(m.size for m in files), max_bytes, max_files)
        for member in files:
            target = destination / _member_path(member.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with bundle.extractfile(member) as source, target.open("wb") as sink:
                _copy_capped(source, sink, member.size)


def _check_sizes(count: int, total: int, max_bytes: int, max_files: int) -> None:
    if count > max_files:
        raise ArchiveRefused(f"The archive holds {count} files; a model archive holds at most {max_files}.")
    if total > max_bytes:
        raise ArchiveRefused(f"The archive expands to {total} bytes; at most {max_bytes}.")


def _copy_capped(source, sink, declared: int) -> None:
    """Copy no more than the member declared (a forged header cannot expand past the checked total)."""
    remaining = declared
    while True:
        block = source.read(min(1024 * 1024, remaining + 1))
        if not block:
            return
        remaining -= len(block)
        if remaining < 0:
            raise ArchiveRefused("An archive member holds more bytes than its header declares.")
        sink.write(block)


def model_root(directory: Path) -> Path:
    """The directory holding config.json: `directory` itself, or its only sub-directory."""
    if (directory / "config.json").is_file():
        return directory
    children = [p for p in directory.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    if len(children) == 1 and children[0].is_dir() and (children[0] / "config.json").is_file():
        return children[0]
    raise ArchiveRefused("The archive has no config.json at its top (or in its single top folder); "
                         "upload a Hugging Face or torchvision model directory: config.json + model.safetensors.")


def check_model_files(root: Path) -> list[Path]:
    """The files of a model directory, or ArchiveRefused: pickles, links, foreign types, no weights."""
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise ArchiveRefused(f"'{path.relative_to(root)}' is a link; upload the files themselves.")
        if not path.is_file() or "__MACOSX" in path.parts or path.name == ".DS_Store":
            continue
        relative = path.relative_to(root).as_posix()
        lowered = path.name.lower()
        if lowered.endswith(PICKLE_SUFFIXES):
            raise ArchiveRefused(
                f"'{relative}' is a pickle-based checkpoint, which can run code when loaded; only safetensors weights "
                f"are accepted. {CONVERT_HINT}"
            )
        if not (lowered.endswith(ALLOWED_SUFFIXES) or path.name in ALLOWED_NAMES or path.stem in ALLOWED_NAMES):
            raise ArchiveRefused(
                f"'{relative}' is not a file a model may hold here; allowed: weights as .safetensors, and "
                f"{', '.join(s for s in ALLOWED_SUFFIXES if s != '.safetensors')} files."
            )
        if lowered.endswith(".py"):
            raise ArchiveRefused(f"'{relative}' is code; models with custom code are never run here.")
        files.append(path)
    if not any(p.name.endswith(".safetensors") for p in files):
        raise ArchiveRefused(f"The model has no .safetensors weights. {CONVERT_HINT}")
    return files


def copy_model_files(root: Path, destination: Path) -> None:
    """Copy the checked files of `root` into `destination` (nothing else comes along)."""
    for path in check_model_files(root):
        target = destination / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
