"""The model-archive policy: which files of a model are stored, and how each is checked.

Every model that is stored goes through it: imported archives (.zip, .tar.gz) and directories,
the model garden's, and what a task saves after training.

- The archive is listed and checked before anything is read (`ingestion.open_archive`: member
  count, safe paths, no links, declared sizes within REGISTRY_MAX_EXTRACTED_BYTES).
- A pickle-based checkpoint anywhere in it refuses the archive, with the command that converts
  it (a pickle can run code when it is loaded); so does code.
- The model's top is the folder holding config.json: the archive's top, or its single top folder.
- Kept: the files at the top that the task loads (`Task.model_files`: the config, safetensors
  weights, tokenizer and processor files). Everything else (a README, another framework's
  weights, sub-folders) is dropped: never read, never written, and reported.
- Each kept file is copied as a stream, its bytes counted against the budget. A `.safetensors`
  file's header is read and checked first (its length, its JSON, every tensor's dtype, shape and
  offsets, the file's size); a forged one stops there, before its data is copied.
- The version's digest covers every stored file (`storage.tree_digest`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from verticals.sdk.artifacts import NotSafetensors, safetensors_header
from verticals.sdk.ingestion import Budget, Member, Problem, Refused, open_archive, write_member

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
CODE_SUFFIXES = (
    ".py",
    ".pyc",
    ".pyo",
    ".so",
    ".dll",
    ".dylib",
    ".exe",
    ".sh",
    ".bat",
    ".cmd",
    ".ps1",
    ".jar",
    ".ipynb",
)
# config.json and the other *config.json files, read whole when loading
CONFIG_MAX_BYTES = 4 * 1024 * 1024
# a tokenizer or vocabulary file (the largest known tokenizer.json: ~33 MB)
SIDE_FILE_MAX_BYTES = 64 * 1024 * 1024
CONVERT_HINT = (
    "Convert it to safetensors first, in a trusted environment: for a Hugging Face model, "
    "`AutoModel.from_pretrained(dir).save_pretrained(out, safe_serialization=True)`; for a "
    "torchvision/PyTorch state dict, `safetensors.torch.save_file(torch.load(path, weights_only=True), "
    "'model.safetensors')` with a config.json naming the architecture."
)


@dataclass(frozen=True)
class ModelFiles:
    """A model's checked files under `directory` (their names, sorted), and the names of what the
    source held that was dropped."""

    directory: Path
    files: list[str]
    dropped: list[str]


def unpack_model(
    source: Path, destination: Path, *, patterns: Sequence[str], max_bytes: int, max_files: int
) -> ModelFiles:
    """Copy the files of a model archive (or directory) that the policy keeps into `destination`,
    each checked as it streams; raises Refused saying what to fix."""
    budget = Budget(max_bytes=max_bytes, max_files=max_files, what="The model archive")
    with open_archive(source, budget=budget) as members:
        kept, dropped = _plan(members, patterns)
        destination.mkdir(parents=True, exist_ok=True)
        for member, name in kept:
            _copy_checked(member, destination / name)
    return ModelFiles(destination, sorted(name for _, name in kept), dropped)


def _clutter(name: str) -> bool:
    """What archivers add by themselves (macOS resource forks and folder settings): never kept or reported."""
    parts = name.split("/")
    return "__MACOSX" in parts or parts[-1] == ".DS_Store" or parts[-1].startswith("._")


def _plan(
    members: list[Member], patterns: Sequence[str]
) -> tuple[list[tuple[Member, str]], list[str]]:
    """(the members kept, with their names at the model's top; the names dropped), decided from
    the listing alone, before anything is read."""
    members = [m for m in members if not _clutter(m.name)]
    for member in members:
        lowered = member.name.lower()
        if lowered.endswith(PICKLE_SUFFIXES):
            raise Refused(
                f"'{member.name}' is a pickle-based checkpoint, which can run code when loaded; only safetensors weights "
                f"are accepted. {CONVERT_HINT}",
                [Problem(member.name, "a pickle-based checkpoint")],
            )
        if lowered.endswith(CODE_SUFFIXES):
            raise Refused(
                f"'{member.name}' is code; models with custom code are never run here. Remove it and upload "
                f"the weights (safetensors) and configuration only.",
                [Problem(member.name, "code")],
            )
    top = _model_top([m.name for m in members])
    kept, dropped = [], []
    for member in members:
        name = member.name[len(top) :] if member.name.startswith(top) else member.name
        if (
            member.name.startswith(top)
            and "/" not in name
            and any(fnmatchcase(name, p) for p in patterns)
        ):
            kept.append((member, name))
        else:
            dropped.append(member.name)
    if not any(name.endswith(".safetensors") for _, name in kept):
        raise Refused(
            f"The model has no .safetensors weights at its top (next to config.json). {CONVERT_HINT}"
        )
    return kept, dropped


def _model_top(names: list[str]) -> str:
    """The prefix of the folder holding config.json: "" (the archive's top) or its single top folder's."""
    if "config.json" in names:
        return ""
    visible = [n for n in names if not n.startswith(".")]
    tops = {n.split("/")[0] for n in visible}
    if (
        len(tops) == 1
        and all("/" in n for n in visible)
        and f"{next(iter(tops))}/config.json" in names
    ):
        return f"{next(iter(tops))}/"
    raise Refused(
        "The archive has no config.json at its top (or in its single top folder); upload a Hugging Face or "
        "torchvision model directory: config.json + model.safetensors."
    )


def _copy_checked(member: Member, target: Path) -> None:
    if target.name.endswith(".safetensors"):
        with member.open() as stream:
            try:
                _header, head = safetensors_header(stream, size=member.size)
            except NotSafetensors as exc:
                fix = (
                    f"It looks like a PyTorch checkpoint (a pickle), which can run code when loaded. {CONVERT_HINT}"
                    if exc.pickle_like
                    else "Save the weights with safetensors (`safetensors.torch.save_file`) and upload again."
                )
                raise Refused(
                    f"'{member.name}' is not a safetensors file: {exc}. {fix}",
                    [Problem(member.name, str(exc))],
                ) from None
            write_member(stream, target, head=head)
        return
    limit = CONFIG_MAX_BYTES if target.name.endswith("config.json") else SIDE_FILE_MAX_BYTES
    if member.size > limit:
        raise Refused(
            f"'{member.name}' has {member.size} bytes; a model's {target.name} holds at most {limit}.",
            [Problem(member.name, f"{member.size} bytes")],
        )
    with member.open() as stream:
        write_member(stream, target)


def check_model_files(directory: Path, patterns: Sequence[str]) -> list[str]:
    """The files of a saved model directory, checked by the policy (for the test kit: what a task
    saves must be stored as it is); raises Refused, and names files the policy would drop."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        checked = unpack_model(
            directory, Path(scratch) / "model", patterns=patterns, max_bytes=2**63, max_files=10_000
        )
    if checked.dropped:
        raise Refused(
            f"The model holds files its task does not name in model_files: {', '.join(checked.dropped)}."
        )
    return checked.files
