"""Job dispatch benchmark: how long the platform takes to start and finish a job that does nothing.

    .venv/bin/python bench/jobs_dispatch.py [--jobs N] [--warmup W] [--concurrency C] [--check]

Run from the repository root. Needs Redis on 127.0.0.1:6379 (it takes a free database among
10–15 and empties it). The database is a temporary SQLite file, or the PostgreSQL database that
DATABASE_URL names (created if missing, migrated; the benchmark's tenant is deleted afterwards).
It starts a real worker (`celery -A verticals worker`, prefork) whose only job kind is the
benchmark's no-op runner (bench/runners.py, through JOBS_RUNNER_MODULES), submits N jobs one after
another through `engine.job_create`, and prints, side by side:

  submit → running   job created (its row) → the worker started it (its row): the dispatch latency
  round trip         before job_create() → this process sees `succeeded` (polling the row)
  in-process         job_create() + the worker's own code run in this process, no broker, no worker
  direct call        the no-op runner's run() called as a plain function

Target: dispatch p50 ≤ 50 ms. With --check the exit status is 1 when it is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench.runners, tests.jobs.live_worker

TARGET_DISPATCH_P50_MS = 50.0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100), linear between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.2f} µs"


def ensure_postgres_database(url: str) -> str:
    """Create the database DATABASE_URL names when it is missing; return its name."""
    import dj_database_url
    import psycopg
    from psycopg import sql

    config = dj_database_url.parse(url)
    name = config["NAME"]
    conninfo = psycopg.conninfo.make_conninfo(
        host=config.get("HOST") or None,
        port=str(config.get("PORT") or "") or None,
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        dbname="postgres",
    )
    with psycopg.connect(conninfo, autocommit=True) as connection:
        if not connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone():
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created PostgreSQL database {name}")
    return name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs to measure (default 200)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="jobs run first and not counted (default 5)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=2, help="worker pool processes (default 2)"
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=0.002,
        help="seconds between reads of the job row (default 0.002)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when the target is missed"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (database, worker log)"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    from tests.jobs.live_worker import LiveWorker, RedisDatabase, ServiceDown

    tmp = Path(tempfile.mkdtemp(prefix="verticals-bench-"))
    var_dir = tmp / "var"
    given_url = os.environ.get("DATABASE_URL", "").strip()
    if given_url:
        if not given_url.startswith(("postgres://", "postgresql://")):
            parser.error(
                "DATABASE_URL must name a PostgreSQL database (or leave it unset for a temporary SQLite file)"
            )
        database_url = given_url
        database_label = f"PostgreSQL database {ensure_postgres_database(given_url)}"
    else:
        database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
        database_label = f"SQLite file {tmp / 'bench.sqlite3'}"

    redis_db = RedisDatabase()
    try:
        redis_db.acquire()
    except ServiceDown as exc:
        print(f"jobs_dispatch: {exc}; the benchmark runs on Redis.", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
        return 2

    # This process is configured like the worker: same database, broker and job kinds.
    for name in [n for n in os.environ if n.startswith(("JOBS_", "CELERY_"))]:
        del os.environ[name]
    os.environ.update(
        DJANGO_SETTINGS_MODULE="verticals.config.settings",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=redis_db.url,
        VERTICALS_VAR_DIR=str(var_dir),
        JOBS_RUNNER_MODULES="bench.runners",
    )
    worker = None
    tenant = None
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        settings.DEBUG = False  # no query log growing in this process
        call_command("migrate", verbosity=0)

        from bench.runners import BenchNoop
        from verticals.jobs import engine
        from verticals.jobs import worker as job_worker
        from verticals.jobs.models import Job
        from verticals.tenancy.scoping import tenant_context
        from verticals.tenancy.services import partner_root, project_create, tenant_create

        tenant = tenant_create(partner=partner_root(), name=f"Bench {uuid.uuid4().hex[:8]}")
        with tenant_context(tenant):
            project = project_create(tenant=tenant, name="dispatch benchmark")

        worker = LiveWorker(
            broker_url=redis_db.url,
            database_url=database_url,
            var_dir=var_dir,
            beat=False,
            concurrency=args.concurrency,
            runner_modules="bench.runners",
            timings={},
        )
        started = time.perf_counter()
        worker.start()
        print(f"worker ready in {time.perf_counter() - started:.1f} s (log: {worker.log_path})")

        rows = Job.dangerously_unscoped  # the benchmark's own tenant's jobs, by primary key

        def one_job() -> tuple[float, float, float]:
            t0 = time.perf_counter()
            job = engine.job_create(project=project, kind=BenchNoop.kind, params={})
            submitted = time.perf_counter() - t0
            deadline = t0 + 30
            while True:
                status, created, began, ended = (
                    rows.filter(pk=job.pk)
                    .values_list("status", "created_at", "started_at", "finished_at")
                    .get()
                )
                if status in Job.TERMINAL:
                    break
                if time.perf_counter() > deadline:
                    raise RuntimeError(
                        f"job {job.public_id} still {status} after 30 s; worker log: {worker.log_path}"
                    )
                time.sleep(args.poll)
            round_trip = time.perf_counter() - t0
            if status != Job.Status.SUCCEEDED:
                raise RuntimeError(
                    f"job {job.public_id} ended {status}; worker log: {worker.log_path}"
                )
            return (began - created).total_seconds(), round_trip, submitted

        def one_in_process() -> float:
            sent = engine.send
            engine.send = lambda public_id, queue: (
                None
            )  # dispatched (the row says so) but not published
            try:
                t0 = time.perf_counter()
                job = engine.job_create(project=project, kind=BenchNoop.kind, params={})
                status = job_worker.execute(job.public_id)
                elapsed = time.perf_counter() - t0
            finally:
                engine.send = sent
            if status != Job.Status.SUCCEEDED:
                raise RuntimeError(f"in-process job {job.public_id} ended {status}")
            return elapsed

        for _ in range(args.warmup):
            one_job()
            one_in_process()
        dispatch, round_trip, submit = [], [], []
        for _ in range(args.jobs):
            d, r, s = one_job()
            dispatch.append(d)
            round_trip.append(r)
            submit.append(s)
        in_process = [one_in_process() for _ in range(args.jobs)]
        runner, ctx = BenchNoop(), None
        direct = []
        for _ in range(max(args.jobs, 1000)):
            t0 = time.perf_counter()
            runner.run(ctx)
            direct.append(time.perf_counter() - t0)

        print()
        print(
            f"jobs_dispatch: {args.jobs} no-op jobs (kind {BenchNoop.kind}, queue {BenchNoop.queue}) submitted one "
            f"after another through engine.job_create, after {args.warmup} warm-up jobs"
        )
        print(f"  broker   Redis {redis_db.url}")
        print(f"  database {database_label}")
        print(
            f"  worker   celery -A verticals worker, prefork, concurrency {args.concurrency}; "
            f"row polled every {args.poll * 1e3:g} ms"
        )
        print()
        table = [
            ("submit → running (dispatch)", dispatch, "created_at → started_at of the job row"),
            ("round trip (no-op job)", round_trip, "before job_create() → `succeeded` seen here"),
            ("  of which job_create()", submit, "validate, insert, commit, publish"),
            ("in-process, no broker", in_process, "job_create() + worker.execute() here"),
            ("direct call of run()", direct, f"{len(direct)} calls, timer included"),
        ]
        print(f"  {'':30} {'p50':>10} {'p95':>10}   what")
        for label, values, what in table:
            print(
                f"  {label:30} {fmt(percentile(values, 50)):>10} {fmt(percentile(values, 95)):>10}   {what}"
            )
        direct_p50 = percentile(direct, 50)
        print()
        print(
            f"  ratios to the direct call (p50): dispatch ×{percentile(dispatch, 50) / direct_p50:,.0f}, "
            f"round trip ×{percentile(round_trip, 50) / direct_p50:,.0f}, in-process ×{percentile(in_process, 50) / direct_p50:,.0f}"
        )
        print(
            f"  round trip p50 / in-process p50: ×{percentile(round_trip, 50) / percentile(in_process, 50):.1f} "
            "(what the broker and the worker add)"
        )
        p50_ms = percentile(dispatch, 50) * 1e3
        met = p50_ms <= TARGET_DISPATCH_P50_MS
        print()
        print(
            f"target: dispatch p50 ≤ {TARGET_DISPATCH_P50_MS:g} ms — {'MET' if met else 'MISSED'} ({p50_ms:.1f} ms)"
        )
        return 1 if args.check and not met else 0
    finally:
        if worker is not None:
            worker.stop()
        if tenant is not None and given_url:
            try:
                tenant.delete()
            except Exception as exc:  # leave it; say so
                print(
                    f"(could not delete the benchmark tenant {tenant.public_id}: {exc})",
                    file=sys.stderr,
                )
        redis_db.release()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
