"""Memory benchmark: what each hostile input costs the web process and its inference process.

    .venv/bin/python bench/memory.py [--only predict|uploads] [--check] [--keep]

Run from the repository root (no broker needed). It trains the tests' tiny image classifier, starts
the server as docker/compose.yaml runs the web service (gunicorn with one uvicorn worker: one web
process and its inference process) on a temporary SQLite database, imports the classifier through
the API and uses every route once, records both processes' idle RSS, then sends each input of
tests/memory.py one after another — the predict calls (one 6300×6300 PNG, 8 and 16 of them, an
11 MB JSON body of base64 images, a body over the predict limit) and the uploads (a dataset zip of
one and of two 2 GiB zero-filled "png" files, a 100 MB CSV, a model zip expanding to a 3 GiB
model.safetensors, a valid model beside a pickle posing as extra weights) — and prints, side by
side, the status each answered, each process's peak RSS above idle during the call (the kernel's
high-water mark, reset before the call: nothing is missed between samples) and its RSS above idle
once settled, and whether the target is met:

    peak above idle < 512 MB in both processes, and back within 64 MB of idle afterwards.

With --check the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", choices=("predict", "uploads"), help="send one group of inputs only"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="verticals-bench-memory-"))
    for name in [
        n for n in os.environ if n.startswith(("SERVING_", "REGISTRY_", "DATA_UPLOAD_", "DJANGO_"))
    ]:
        del os.environ[name]
    os.environ.update(
        DJANGO_SETTINGS_MODULE="verticals.config.settings",
        DATABASE_URL=f"sqlite:///{tmp / 'bench.sqlite3'}",
        VERTICALS_VAR_DIR=str(tmp / "var"),
        TORCH_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRAIN_DEVICE="cpu",
    )
    try:
        import django

        django.setup()
        import torch

        from tests.memory import BUDGET, MB, SETTLED, LivePlatform, predict_cases, upload_cases
        from tests.registry.factories import tiny_model_dir

        torch.set_num_threads(1)
        model_dir = tiny_model_dir(
            "image-classification"
        )  # trained through the task, no database needed
        cases = (predict_cases() if args.only != "uploads" else []) + (
            upload_cases(tmp / "hostile", model_dir) if args.only != "predict" else []
        )
        with LivePlatform(tmp / "platform", model_dir) as live:
            idle = live.idle()
            print(
                f"\nmemory: gunicorn + uvicorn, 1 web process and its inference process; idle RSS "
                f"web {idle['web'] / MB:.0f} MB, inference {idle['inference'] / MB:.0f} MB"
            )
            print(
                f"  {'input':58} {'status':>6} {'peak above idle (MB)':>21} {'after (MB)':>13} {'time':>7}  target"
            )
            print(f"  {'':58} {'':>6} {'web':>10} {'inference':>10} {'web':>6} {'inf.':>6}")
            missed = []
            for case in cases:
                result = live.measure(case, idle)
                problems = result.problems()
                if problems:
                    missed.append((case.name, problems))
                print(
                    f"  {case.name:58} {result.status:>6} {result.above('peak', 'web') / MB:>10.0f} "
                    f"{result.above('peak', 'inference') / MB:>10.0f} {result.above('after', 'web') / MB:>6.0f} "
                    f"{result.above('after', 'inference') / MB:>6.0f} {result.seconds:>6.1f}s  "
                    f"{'met' if not problems else 'MISSED'}",
                    flush=True,
                )
        print(
            f"  targets: peak above idle < {BUDGET // MB} MB and after < {SETTLED // MB} MB, in both processes, "
            f"with the expected status: " + ("met" if not missed else "MISSED")
        )
        for name, problems in missed:
            print(f"    {name}: {'; '.join(problems)}")
        return 1 if args.check and missed else 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
