"""Row-level security benchmark: what PostgreSQL's second wall costs a list call and a predict call.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/verticals .venv/bin/python bench/rls.py
        [--requests N] [--clients C] [--repeat R] [--tenants T] [--projects P] [--check] [--keep]

Run from the repository root with DATABASE_URL naming a PostgreSQL server and a user that may
create databases and bypasses row-level security (a superuser, as on the set-up machine). It
creates a scratch database beside the one named (`<name>_bench_<pid>`, dropped at the end), fills
it with T tenants (default 20) of P projects each (default 50) and the tests' tiny sentiment model
for the measured tenant, and starts two servers on it as docker/compose.yaml runs the web service
(gunicorn with a uvicorn worker, 1 web process and its inference process):

  RLS on   the application logs in as DATABASE_APP_USER (a role without BYPASSRLS) through the
           platform's backend, which tells the database each statement's tenant; every
           tenant-owned table's policy filters its rows
  RLS off  DATABASE_RLS=0: Django's own backend, logged in as DATABASE_URL's user, which bypasses
           the policies (the first wall, the application's scoping, is all there is)

and prints, side by side, the calls per second of C concurrent HTTP client processes (default 4)
for `GET /api/v1/projects/` (a page of the tenant's projects among everyone's) and for `POST
…/models/{id}/predict` (one review), with the web process's CPU per call. Each of R rounds
(default 10) measures both servers back to back (the first alternating) and gives one ratio, time
per call with RLS ÷ without; the median ratio counts.                      target ≤ 1.05 each

With --check the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.billing import REVIEWS, SERVER_ENV, served_rate, serving_tenant, warm_up  # noqa: E402
from bench.harness import migrated_platform  # noqa: E402
from bench.plugin_sdk import process_tree_cpu  # noqa: E402

TARGET = 1.05  # time per call with RLS / without, at most


def fill(tenants: int, projects: int) -> None:
    """Other tenants' rows beside the measured tenant's, so that the policies have rows to filter."""
    from verticals.tenancy.models import Project
    from verticals.tenancy.scoping import tenant_context
    from verticals.tenancy.services import partner_root, tenant_create

    for number in range(tenants):
        tenant = tenant_create(partner=partner_root(), name=f"Filler {number}")
        with tenant_context(tenant):
            Project.objects.bulk_create(
                [Project(tenant=tenant, name=f"project {i}") for i in range(projects)]
            )


def measure(args, tmp: Path) -> tuple[dict, dict, list[str]]:
    from tests.processes import production_server
    from verticals.tenancy.models import Project
    from verticals.tenancy.scoping import tenant_context

    tenant, project, model, secret = serving_tenant(tmp, "rls")
    with tenant_context(tenant):
        Project.objects.bulk_create(
            [Project(tenant=tenant, name=f"project {i}") for i in range(args.projects - 1)]
        )
    fill(args.tenants - 1, args.projects)

    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    calls = {
        "list": ("/api/v1/projects/", None),
        "predict": (
            f"/api/v1/projects/{project.public_id}/models/{model.public_id}/predict",
            REVIEWS,
        ),
    }
    rates = {name: {"on": [], "off": []} for name in calls}
    cpu = {name: {"on": [], "off": []} for name in calls}
    on_server = production_server({**os.environ, **SERVER_ENV})
    off_server = production_server({**os.environ, **SERVER_ENV, "DATABASE_RLS": "0"})
    with on_server as on_url, off_server as off_url:
        urls = {"on": on_url, "off": off_url}
        pids = {"on": on_server.process.pid, "off": off_server.process.pid}
        for url in urls.values():
            warm_up(url, calls["predict"][0], headers)
        for round_ in range(max(1, args.repeat)):
            for name, (path, texts) in calls.items():
                for side in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                    before = process_tree_cpu(pids[side]).get("web process", 0.0)
                    port = int(urls[side].rsplit(":", 1)[1])
                    rates[name][side].append(
                        served_rate(port, path, headers, args.requests, args.clients, texts)
                    )
                    cpu[name][side].append(
                        process_tree_cpu(pids[side]).get("web process", 0.0) - before
                    )
    requests = args.requests // args.clients * args.clients
    results, notes = {}, []
    for name in calls:
        ratios = sorted(
            off / on for on, off in zip(rates[name]["on"], rates[name]["off"], strict=True)
        )
        results[name] = (
            statistics.median(rates[name]["on"]),
            statistics.median(rates[name]["off"]),
            statistics.median(ratios),
        )
        per_call = {
            side: sum(cpu[name][side]) / (requests * len(cpu[name][side])) * 1000
            for side in ("on", "off")
        }
        notes.append(
            f"{name}: ratio per round {', '.join(f'{r:.3f}' for r in ratios)} (sorted); web process CPU per call "
            f"{per_call['on']:.2f} ms with RLS, {per_call['off']:.2f} ms without"
        )
    return results, {"requests": requests}, notes


def report(args, database: str, results: dict, shape: dict, notes: list[str]) -> int:
    print()
    print(
        f"rls: {database}; {args.tenants} tenants × {args.projects} projects; {max(1, args.repeat)} rounds of "
        f"{shape['requests']} calls per side, {args.clients} HTTP client processes, gunicorn uvicorn, 1 web process; medians"
    )
    print(f"  {'':10} {'RLS on':>16} {'RLS off':>16} {'ratio':>7} {'target':>8}")
    missed = []
    for name, (on, off, ratio) in results.items():
        if ratio > TARGET:
            missed.append(name)
        print(
            f"  {name:10} {on:>10.1f} req/s {off:>10.1f} req/s {ratio:>7.3f} {'≤ ' + str(TARGET):>8}   (time per call with ÷ without)"
        )
    for note in notes:
        print("  " + note)
    print("  targets: " + ("met" if not missed else "MISSED: " + ", ".join(missed)))
    return 1 if args.check and missed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=400, help="calls per side in each round (default 400)"
    )
    parser.add_argument(
        "--clients", type=int, default=4, help="concurrent HTTP clients (default 4)"
    )
    parser.add_argument(
        "--repeat", type=int, default=10, help="rounds, each measuring both sides (default 10)"
    )
    parser.add_argument(
        "--tenants", type=int, default=20, help="tenants in the database (default 20)"
    )
    parser.add_argument(
        "--projects", type=int, default=50, help="projects of each tenant (default 50)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder and the scratch database"
    )
    args = parser.parse_args(argv)

    given = os.environ.get("DATABASE_URL", "")
    if not given.startswith(("postgres://", "postgresql://")):
        parser.error(
            "row-level security is PostgreSQL's: set DATABASE_URL to a PostgreSQL server "
            "(e.g. postgres://postgres@127.0.0.1:5432/verticals)"
        )
    with migrated_platform("rls", keep=args.keep) as place:
        results, shape, notes = measure(args, place.tmp)
        return report(args, place.database, results, shape, notes)


if __name__ == "__main__":
    sys.exit(main())
