"""Loading an imported model once, in a process of its own, before it is stored.

Loading builds the model's architecture from its config.json and reads its weights, and what
that costs is set by those files, not by the upload's size: a 1 kB config can name a billion-row
embedding, a 6 MB zip can hold a well-formed 6 GiB tensor of zeros. So the web process never
loads an imported model: a short-lived child (`python -m verticals.registry.loadcheck`) does,
with its address space limited to REGISTRY_IMPORT_LOAD_MEMORY_BYTES above its idle size, and
answers whether the model loads. A model that loads there is one the inference process can load.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from verticals.sdk.contracts import Task
from verticals.sdk.ingestion import Refused

log = logging.getLogger(__name__)

LOADS, DOES_NOT_LOAD, NEEDS_MORE_MEMORY = 0, 2, 3


def check_loads(task: Task, directory: Path) -> None:
    """Whether `task.load(directory)` succeeds, tried in a child process; raises Refused saying why not."""
    memory = settings.REGISTRY_IMPORT_LOAD_MEMORY_BYTES
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE")
        or "verticals.config.settings",
    }
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "verticals.registry.loadcheck",
                task.name,
                str(directory),
                str(memory),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=settings.REGISTRY_IMPORT_LOAD_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise Refused(
            f"The model did not load within {settings.REGISTRY_IMPORT_LOAD_SECONDS:g} s."
        ) from None
    if done.returncode == LOADS:
        return
    if done.returncode == NEEDS_MORE_MEMORY:
        raise Refused(
            f"The model needs more than {memory} bytes of memory to load (its config or weights ask for "
            f"that much); import a smaller model."
        )
    if done.returncode == DOES_NOT_LOAD:
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        reason = json.loads(lines[-1])["message"] if lines else "no reason given"
        raise Refused(f"The model does not load as a '{task.name}' model: {reason}")
    # Killed by a signal (the kernel's OOM killer, an allocator that aborts, a crash in a native
    # library) or an exit code it never gives: the weights could not be loaded within the limits.
    log.warning(
        "the process loading an imported model ended with %s: %s",
        done.returncode,
        done.stderr[-2000:],
    )
    raise Refused(
        "The model could not be loaded within the limits an import has (its process ended with "
        f"{done.returncode}); check that its weights and config are those of a '{task.name}' model."
    )


def _address_space() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - not Linux: the limit is the budget alone


def _runs_out_of_memory(exc: BaseException) -> bool:
    # torch reports a refused allocation as a RuntimeError ("DefaultCPUAllocator: can't allocate memory").
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "allocate memory" in str(exc)
    )


def main(argv: list[str]) -> int:
    task_name, directory, memory = argv[1], Path(argv[2]), int(argv[3])
    import django

    django.setup()
    from verticals.sdk import discovery  # (a process of its own: after django.setup())

    task = discovery.get_task(task_name)
    try:
        import torch  # the loaders' library, imported before the limit (its own mappings are not the model's)

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - a plugin without torch
        pass
    limit = _address_space() + memory
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        task.load(directory)
    except Exception as exc:  # whatever a plugin's loader raises is the reason the model is refused
        if _runs_out_of_memory(exc):
            return NEEDS_MORE_MEMORY
        print(json.dumps({"message": str(exc) or type(exc).__name__}), flush=True)
        return DOES_NOT_LOAD
    return LOADS


if __name__ == "__main__":
    sys.exit(main(sys.argv))
