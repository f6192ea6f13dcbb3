"""Billing benchmark: what metering adds to a predict call, and how long closing a big period takes.

    .venv/bin/python bench/billing.py [--requests N] [--clients C] [--repeat R] [--events E]
                                      [--only metering|close] [--check] [--keep]

Run from the repository root (no broker needed: it starts its own servers). It works on a
temporary SQLite database, or, when DATABASE_URL names a PostgreSQL server, on a scratch database
created on that server (DATABASE_URL's name + `_bench_<pid>`) and dropped at the end. It prints:

  metering  predict calls per second of C concurrent HTTP clients (processes, as bench/plugin_sdk.py
            runs them), one review per request, against the same server with billing metering ON
            (BILLING_METERING=true: the tenant is on a soft-capped plan whose requests_per_minute is
            too high ever to refuse, so admission — plan, task, rate counter — and the ledger write
            through the spool both run on every call; the run waits for the ledger to hold them all) and OFF (BILLING_METERING=false). Both servers run as
            docker/compose.yaml runs the web service (gunicorn with a uvicorn worker, 1 web process and
            its inference process) and serve the session-sized tiny sentiment model of the tests
            (`transformer-small`, 1 layer of width 64, trained in seconds on 40 rows), so that the
            model's own time does not hide what metering costs. It also prints each web process's
            CPU time per request. Ratio: time per call with metering / without.      target ≤ 1.05
  close     the time `invoicing.issue_retail` takes to invoice one tenant's period of E usage
            events (default 1,000,000, over 5 meters): the database sums them (one GROUP BY per
            plan segment). The events are loaded first in bulk (executemany on SQLite, COPY on
            PostgreSQL, then ANALYZE); that set-up time is printed apart.          target ≤ 10 s

The metering comparison runs R rounds (default 10); each measures both sides back to back (the
first side alternating) and gives one ratio; the median ratio over the rounds is the result, so
that a slow moment of the machine spoils one round, not the comparison. With --check the exit
status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.harness import migrated_platform  # noqa: E402
from bench.plugin_sdk import client_process, post_json, process_tree_cpu  # noqa: E402

TARGET_METERING = 1.05  # time per call with metering / without, at most
TARGET_CLOSE = 10.0  # seconds to invoice a period of 1,000,000 events, at most (scaled by --events)
CLOSE_METERS = (
    "inference.requests",
    "textgen.tokens",
    "vision.images",
    "training.cpu_seconds",
    "storage.gb_days",
)
REVIEWS = [
    "I loved this product, it works perfectly",
    "Terrible, it broke after one day",
    "Fantastic quality and a great price",
    "Very disappointing, do not buy",
    "Absolutely wonderful, would buy again",
    "Awful quality and a waste of money",
]


# --- the database ---------------------------------------------------------------------------


def load_events(tenant, period, count: int, seed: int = 0) -> None:
    """`count` usage events of `tenant` spread over `period` and CLOSE_METERS, loaded in bulk: the
    columns of a UsageEvent the ORM would write, in chunks of 50,000 (COPY on PostgreSQL, which
    refuses COPY into a table under row-level security: the owner loads them there)."""
    from django.db import connection, transaction

    from verticals.billing.models import UsageEvent
    from verticals.tenancy import rls

    fields = [f for f in UsageEvent._meta.concrete_fields if not f.primary_key]
    template = UsageEvent(
        tenant_id=tenant.pk,
        meter=CLOSE_METERS[0],
        quantity=1,
        source="external:bench",
        idempotency_key="",
        occurred_at=period[0],
        recorded_at=period[0],
    )
    base = [f.get_db_prep_save(f.pre_save(template, True), connection) for f in fields]
    at = {f.column: i for i, f in enumerate(fields)}
    rng = random.Random(seed)
    span_us = int((period[1] - period[0]).total_seconds() * 1e6)
    adapt = connection.ops.adapt_datetimefield_value
    table = connection.ops.quote_name(UsageEvent._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    chunk = 50_000
    with rls.as_owner(connection, "the benchmark bulk-loads its tenant's usage events"):
        for start in range(0, count, chunk):
            rows = []
            for i in range(start, min(count, start + chunk)):
                row = list(base)
                row[at["meter"]] = CLOSE_METERS[i % len(CLOSE_METERS)]
                row[at["quantity"]] = rng.randrange(
                    1, 3_000_000
                )  # micro-units: up to 3 units with 6 decimals
                row[at["idempotency_key"]] = f"bench-{i}"
                row[at["occurred_at"]] = adapt(
                    period[0] + timedelta(microseconds=rng.randrange(span_us))
                )
                rows.append(row)
            with transaction.atomic(), connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                else:
                    cursor.executemany(
                        f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})",
                        rows,
                    )
        with connection.cursor() as cursor:
            cursor.execute(
                f"ANALYZE {table}"
            )  # as autovacuum (PostgreSQL) or a maintenance job (SQLite) would


# --- metering ON and OFF --------------------------------------------------------------------


def served_rate(
    port: int,
    path: str,
    headers: dict,
    requests: int,
    clients: int,
    texts: list[str] | None = REVIEWS,
) -> float:
    """Requests/s of C client processes released together, each sending its share one after
    another on a kept-alive connection (bench/plugin_sdk.py's client): predict calls with `texts`,
    or GETs of `path` with None."""
    ctx = multiprocessing.get_context("fork")
    per_client = requests // clients
    start, done = ctx.Barrier(clients + 1), ctx.Queue()
    workers = [
        ctx.Process(
            target=client_process, args=(port, path, headers, texts, c * 7, per_client, start, done)
        )
        for c in range(clients)
    ]
    for process in workers:
        process.start()
    start.wait()
    t0 = time.perf_counter()
    failures = [done.get(timeout=600) for _ in workers]
    elapsed = time.perf_counter() - t0
    for process in workers:
        process.join()
    failed = [f for f in failures if f]
    if failed:
        raise RuntimeError(f"calls failed, e.g. {failed[0]}")
    return per_client * clients / elapsed


# Plain HTTP on loopback; persistent database connections, as production sets them.
SERVER_ENV = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "127.0.0.1",
    "SECRET_KEY": "bench-" + "x" * 50,
    "SECURE_SSL_REDIRECT": "0",
    "DB_CONN_MAX_AGE": "600",
}


def serving_tenant(tmp: Path, name: str):
    """A tenant with an owner, a project, an API key (read, predict) and the tests' tiny sentiment
    model (`transformer-small`, 1 layer of width 64): (tenant, project, model, secret)."""
    from tests.registry.factories import tiny_architecture, tiny_model_dir
    from verticals.registry import services
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

    tenant = tenant_create(partner=partner_root(), name=f"{name.capitalize()} benchmark")
    owner = User.objects.create_user(email=f"bench-{name}@example.com", password=None)
    task = discovery.get_task("sentiment")
    saved = tiny_model_dir("sentiment")
    copy = tmp / f"model-{name}"
    shutil.copytree(saved, copy)
    with tenant_context(tenant):
        Membership.objects.create(tenant=tenant, user=owner, role=Role.OWNER)
        caller = Caller(user=owner, tenant=tenant, role=Role.OWNER)
        project = project_create(tenant=tenant, name=name)
        _key, secret = api_key_create(
            caller=caller, name="bench", scopes=[Scope.PREDICT, Scope.READ], role=Role.OWNER
        )
        model = services.model_publish(
            project=project,
            task=task,
            model=None,
            name="tiny",
            architecture=tiny_architecture("sentiment"),
            labels=(saved.parent / "labels.txt").read_text().splitlines(),
            metrics={},
            report={},
            params={},
            directory=copy,
        )
    return tenant, project, model, secret


def warm_up(url: str, path: str, headers: dict, calls: int = 30) -> None:
    """The inference process starts and loads the model; a failing call stops the benchmark."""
    import http.client

    warm = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1]), timeout=60)
    for i in range(calls):
        status, body = post_json(warm, path, {"inputs": REVIEWS[i % len(REVIEWS)]}, headers)
        if status != 200:
            raise RuntimeError(f"predict answered {status}: {body[:300]!r}")
    warm.close()


def measure_metering(args, tmp: Path) -> tuple[tuple, list[str]]:
    from django.db.models import Sum

    from tests.processes import production_server
    from verticals.billing import services as billing
    from verticals.billing.models import Plan, RateWindow, UsageEvent
    from verticals.tenancy.scoping import platform_scope

    tenant, project, model, secret = serving_tenant(tmp, "metering")
    plan = Plan.objects.create(
        code="bench-soft",
        name="Bench soft cap",
        cap=Plan.Cap.SOFT,
        requests_per_minute=1_000_000_000,
    )
    billing.subscribe(tenant, plan)

    path = f"/api/v1/projects/{project.public_id}/models/{model.public_id}/predict"
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    common = SERVER_ENV

    def events() -> int:
        return UsageEvent.dangerously_unscoped.filter(
            tenant_id=tenant.pk
        ).count()  # the benchmark tenant's

    def rate_counted() -> int:
        with platform_scope("the benchmark reads its tenant's rate counter"):
            return RateWindow.objects.filter(tenant=tenant).aggregate(n=Sum("count"))["n"] or 0

    rates: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    notes = []
    on_server = production_server({**os.environ, **common, "BILLING_METERING": "true"})
    off_server = production_server({**os.environ, **common, "BILLING_METERING": "false"})
    with on_server as on_url, off_server as off_url:
        servers = {"on": on_url, "off": off_url}
        # The gunicorn arbiters' pids: their children are the web process and its inference process.
        pids = {"on": on_server.process.pid, "off": off_server.process.pid}
        for url in servers.values():
            warm_up(url, path, headers)
        ports = {side: int(url.rsplit(":", 1)[1]) for side, url in servers.items()}
        admitted_off = 0
        for round_ in range(max(1, args.repeat)):
            for side in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                before_events, before_rate = events(), rate_counted()
                before_cpu = process_tree_cpu(pids[side])
                rates[side].append(
                    served_rate(ports[side], path, headers, args.requests, args.clients)
                )
                used = process_tree_cpu(pids[side])
                cpu[side].append(used.get("web process", 0.0) - before_cpu.get("web process", 0.0))
                requests = args.requests // args.clients * args.clients
                recorded = events() - before_events
                waited = time.monotonic()
                while side == "on" and recorded < requests and time.monotonic() - waited < 10:
                    time.sleep(0.05)  # the server's ledger spool writes its last batch
                    recorded = events() - before_events
                if side == "on" and recorded != requests:
                    raise RuntimeError(
                        f"metering ON recorded {recorded} events for {requests} calls"
                    )
                if side == "off":
                    if recorded:
                        raise RuntimeError(f"metering OFF recorded {recorded} events")
                    admitted_off += rate_counted() - before_rate
    requests = args.requests // args.clients * args.clients
    # Each round measured both sides back to back: its ratio compares them under the same machine
    # load; the median over the rounds is what counts (a slow moment spoils one round, not the result).
    ratios = sorted(off / on for on, off in zip(rates["on"], rates["off"], strict=True))
    ratio = statistics.median(ratios)
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    cpu_on, cpu_off = (
        sum(cpu[side]) / (requests * len(cpu[side])) * 1000 for side in ("on", "off")
    )
    notes.append(f"ratio per round: {', '.join(f'{r:.3f}' for r in ratios)} (sorted)")
    notes.append(
        f"web process CPU per call: {cpu_on:.2f} ms with metering, {cpu_off:.2f} ms without "
        f"(+{cpu_on - cpu_off:.2f} ms)"
    )
    if admitted_off:
        notes.append(
            f"note: with BILLING_METERING=false the rate limit still counted {admitted_off} calls "
            "(quotas.admit does not read the setting), so 'without' still pays for admission"
        )
    return (on, off, ratio, requests), notes


# --- closing a period -----------------------------------------------------------------------


def measure_close(args) -> tuple[float, float, int, int]:
    """(seconds to load the events, seconds to issue the invoice, its lines, events)."""
    from django.utils import timezone

    from verticals.billing import invoicing
    from verticals.billing import services as billing
    from verticals.billing.catalog import period_of, previous_period
    from verticals.billing.models import Plan, PlanPrice
    from verticals.tenancy.scoping import tenant_context
    from verticals.tenancy.services import partner_root, tenant_create

    period = previous_period(period_of(timezone.now())[0], 1)
    tenant = tenant_create(partner=partner_root(), name="Close benchmark")
    plan = Plan.objects.create(code="bench-close", name="Bench close", monthly_fee=49)
    for index, meter in enumerate(CLOSE_METERS):
        PlanPrice.objects.create(
            plan=plan, meter_id=meter, included=1000 * index, unit_price=f"0.00{index + 1}"
        )
    billing.subscribe(tenant, plan, now=period[0])
    started = time.perf_counter()
    load_events(tenant, period, args.events)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    invoice = invoicing.issue_retail(tenant, period)
    closed = time.perf_counter() - started
    with tenant_context(tenant):  # the tenant's invoice, read as the tenant (row-level security)
        lines = invoice.lines.count()
    return loaded, closed, lines, args.events


# --- the table ------------------------------------------------------------------------------


def report(args, database: str, metering, close) -> int:
    print()
    print(f"billing: {database}")
    missed = []
    if metering is not None:
        (on, off, ratio, requests), notes = metering
        if ratio > TARGET_METERING:
            missed.append("metering")
        print(
            f"  metering  {max(1, args.repeat)} rounds of {requests} predict calls per side, {args.clients} HTTP client "
            "processes, gunicorn uvicorn, 1 web process, tiny sentiment model; medians"
        )
        print(f"  {'':10} {'with metering':>16} {'without':>16} {'ratio':>7} {'target':>8}")
        print(
            f"  {'predict':10} {on:>10.1f} req/s {off:>10.1f} req/s {ratio:>7.3f} {'≤ ' + str(TARGET_METERING):>8}"
            "   (time per call with ÷ without)"
        )
        for note in notes:
            print("  " + note)
    if close is not None:
        loaded, closed, lines, events = close
        target = TARGET_CLOSE * max(1.0, events / 1_000_000)
        if closed > target:
            missed.append("close")
        print(
            f"  close     one tenant's period of {events:,} usage events over {len(CLOSE_METERS)} meters"
        )
        print(
            f"  {'':10} {'events':>12} {'load (set-up)':>14} {'close':>9} {'lines':>6} {'target':>9}"
        )
        print(
            f"  {'issue':10} {events:>12,} {loaded:>12.1f} s {closed:>7.2f} s {lines:>6} {'≤ ' + format(target, 'g') + ' s':>9}"
        )
    print("  targets: " + ("met" if not missed else "MISSED: " + ", ".join(missed)))
    return 1 if args.check and missed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests",
        type=int,
        default=400,
        help="predict calls per side in each round (default 400)",
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="concurrent HTTP clients (default 4)"
    )
    parser.add_argument(
        "--repeat", type=int, default=10, help="rounds, each measuring both sides (default 10)"
    )
    parser.add_argument(
        "--events",
        type=int,
        default=1_000_000,
        help="usage events in the closed period (default 1,000,000)",
    )
    parser.add_argument("--only", choices=("metering", "close"), help="measure one part only")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary folder (and the scratch PostgreSQL database)",
    )
    args = parser.parse_args(argv)

    with migrated_platform("billing", keep=args.keep) as place:
        metering = measure_metering(args, place.tmp) if args.only != "close" else None
        close = measure_close(args) if args.only != "metering" else None
        return report(args, place.database, metering, close)


if __name__ == "__main__":
    sys.exit(main())
