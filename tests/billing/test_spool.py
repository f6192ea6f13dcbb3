"""The metered hot path: served calls' events through the ledger spool, rate tokens taken in
blocks, plans remembered until the catalog changes, periods closed after a grace.

What a user would notice: every served call's event reaches the ledger exactly once — also when
the web process is killed before writing it, when the database refuses a write for a while, or
when a project is deleted meanwhile — and the rate limit never lets one call too many through.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from verticals.billing import catalog, invoicing, metering, quotas, services, spool
from verticals.billing.metering import Usage, journal_line, record, record_call, row_of, write_lines
from verticals.billing.models import (
    CatalogVersion,
    Invoice,
    Plan,
    RateWindow,
    UsageCounter,
    UsageEvent,
)
from verticals.infra.spool import Spool
from verticals.tenancy.scoping import tenant_context
from verticals.tenancy.services import partner_root, project_create, tenant_create

METER = "inference.requests"
FIELDS = (
    "tenant_id",
    "project_id",
    "meter",
    "quantity",
    "task",
    "model",
    "api_key_id",
    "user_id",
    "source",
    "route",
    "idempotency_key",
    "details",
    "occurred_at",
    "recorded_at",
)


@pytest.fixture
def spool_dir(tmp_path):
    return tmp_path / "spool"


def events(world) -> list[UsageEvent]:
    return list(
        UsageEvent.dangerously_unscoped.filter(tenant_id=world.tenant.pk).order_by("id")
    )  # the world's tenant's


def served(world, key: str, *, at: datetime | None = None, **extra) -> Usage:
    return Usage(
        METER,
        Decimal(1),
        idempotency_key=key,
        project=world.project,
        task="sentiment",
        model=world.model.public_id,
        api_key=world.key,
        user=world.owner,
        route="predict",
        occurred_at=at,
        **extra,
    )


def stored(event: UsageEvent) -> tuple:
    return tuple(
        getattr(event, name) for name in FIELDS if name not in ("idempotency_key", "recorded_at")
    )


def make_plan(code: str, **fields) -> Plan:
    return Plan.objects.create(code=code, name=code.title(), **fields)


def lines_for(world, keys: list[str]) -> list[str]:
    return [
        journal_line(row.values)
        for row in metering._rows(world.tenant, [served(world, key) for key in keys], "serving")
    ]


# --- the spool ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_served_call_reaches_the_ledger_through_the_spool_exactly_as_a_direct_write(
    world_a, settings
):
    spool.stop()
    settings.BILLING_LEDGER_FLUSH_SECONDS = 3600  # its writer thread waits: this test writes
    at = [
        datetime(2026, 11, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 11, 2, 3, 4, 5, 678901, tzinfo=UTC),
    ]
    details = {"prompt_tokens": 3, "completion_tokens": 4, "finish_reason": "stop"}
    record_call(
        world_a.tenant,
        [served(world_a, "call-0", at=at[0]), served(world_a, "call-1", at=at[1], details=details)],
    )
    assert events(world_a) == [] and spool.current().pending() == 2  # journaled, not written yet

    assert spool.flush() == 2
    through_spool = events(world_a)
    record(
        world_a.tenant,
        [
            served(world_a, "direct-0", at=at[0]),
            served(world_a, "direct-1", at=at[1], details=details),
        ],
        source="serving",
    )
    direct = events(world_a)[2:]
    assert [stored(e) for e in through_spool] == [stored(e) for e in direct]
    assert [e.occurred_at for e in through_spool] == at  # to the microsecond
    with (
        connection.cursor() as cursor
    ):  # and stored as the database backend stores times (SQLite: text it compares)
        cursor.execute("SELECT occurred_at FROM billing_usageevent ORDER BY id")
        times = [value for (value,) in cursor.fetchall()]
    assert times[:2] == times[2:]
    assert through_spool[1].details == details and through_spool[0].project_id == world_a.project.pk
    spool.stop()


@pytest.mark.django_db(transaction=True)
def test_the_writer_thread_writes_on_its_own_within_its_interval(world_a, settings):
    spool.stop()
    settings.BILLING_LEDGER_FLUSH_SECONDS = 0.05
    record_call(world_a.tenant, [served(world_a, "by-the-thread")])
    deadline = time.monotonic() + 10
    while not events(world_a) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [e.idempotency_key for e in events(world_a)] == ["by-the-thread"]
    spool.stop()


def test_inside_a_transaction_a_call_s_events_are_written_at_once(world_a):
    record_call(world_a.tenant, [served(world_a, "in-a-transaction")])
    assert [e.idempotency_key for e in events(world_a)] == ["in-a-transaction"]  # no spool involved


@pytest.mark.django_db(transaction=True)
def test_with_the_spool_off_a_call_s_events_are_written_at_once(world_a, settings):
    settings.BILLING_LEDGER_FLUSH_SECONDS = 0
    assert not spool.enabled()
    record_call(world_a.tenant, [served(world_a, "spool-off")])
    assert [e.idempotency_key for e in events(world_a)] == ["spool-off"]


@pytest.mark.django_db(transaction=True)
def test_when_the_journal_cannot_be_written_the_events_are_written_at_once(world_a, monkeypatch):
    class FullDisk:
        def add(self, lines):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool, "current", FullDisk)
    record_call(world_a.tenant, [served(world_a, "disk-full")])
    assert [e.idempotency_key for e in events(world_a)] == ["disk-full"]


@pytest.mark.django_db(transaction=True)
def test_tokens_a_hard_cap_did_not_reserve_move_its_counter_at_once(world_a):
    plan = make_plan("tokens-capped", cap=Plan.Cap.HARD)
    plan.prices.create(meter_id="textgen.tokens", included=Decimal(100), unit_price=Decimal("0.01"))
    services.subscribe(world_a.tenant, plan)
    admission = quotas.admit(world_a.tenant, task="text-generation", units={"textgen.tokens": None})
    record_call(
        world_a.tenant,
        [Usage("textgen.tokens", Decimal(40), task="text-generation")],
        admission=admission,
    )
    counter = UsageCounter.dangerously_unscoped.get(
        tenant_id=world_a.tenant.pk, meter="textgen.tokens"
    )  # the world's tenant's
    assert counter.quantity == 40 and [e.meter for e in events(world_a)] == [
        "textgen.tokens"
    ]  # no flush needed


KILLED = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from verticals.infra.spool import Spool
lines = open(sys.argv[3], encoding="utf-8").read().splitlines(keepends=True)
dying = Spool(sys.argv[2], 3600, write=lambda _lines: os._exit(3))  # its writer never runs
dying.add(lines[:2])
dying.add(lines[2:])
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.django_db(transaction=True)
def test_a_killed_process_s_journal_is_written_by_the_next_spool_exactly_once(
    world_a, spool_dir, tmp_path
):
    lines = lines_for(world_a, ["killed-0", "killed-1", "killed-2"])
    (tmp_path / "lines.jsonl").write_text("".join(lines), encoding="utf-8")
    # A web process that journals three calls and is killed before its writer runs.
    died = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED,
            str(Path(spool.__file__).parents[2]),
            str(spool_dir),
            str(tmp_path / "lines.jsonl"),
        ],
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert len(list(spool_dir.glob("*.jsonl"))) == 1 and len(list(spool_dir.glob("*.lock"))) == 1

    written = []
    survivor = Spool(
        spool_dir, 3600, write=lambda found: (written.extend(found), write_lines(found))
    )
    assert survivor.recover() == 3
    assert sorted(e.idempotency_key for e in events(world_a)) == [
        "killed-0",
        "killed-1",
        "killed-2",
    ]
    assert written == lines
    write_lines(
        lines
    )  # written again (died between the write and removing the segment): counted once
    assert len(events(world_a)) == 3
    assert (
        sorted(p.name.split(".")[0] for p in spool_dir.iterdir()) == [survivor.owner] * 2
    )  # its lock and segment only
    survivor.close()
    assert list(spool_dir.iterdir()) == []


@pytest.mark.django_db(transaction=True)
def test_a_line_cut_short_by_a_crash_is_skipped_and_the_rest_recovered(world_a, spool_dir, caplog):
    lines = lines_for(world_a, ["whole-0", "whole-1"])
    spool_dir.mkdir()
    (spool_dir / "gone-1-x.lock").write_text("")
    (spool_dir / "gone-1-x.00000001.jsonl").write_bytes(
        "".join(lines).encode() + lines[0][:40].encode() + b"\0" * 64
    )
    survivor = Spool(spool_dir, 3600, write=write_lines)
    assert survivor.recover() == 2
    assert [e.idempotency_key for e in events(world_a)] == ["whole-0", "whole-1"]
    assert "an unfinished last line is skipped" in caplog.text
    survivor.close()


@pytest.mark.django_db(transaction=True)
def test_a_running_spool_s_journal_is_left_alone(world_a, spool_dir):
    alive = Spool(spool_dir, 3600, write=write_lines)
    alive.add(lines_for(world_a, ["alive-0"]))
    other = Spool(spool_dir, 3600, write=write_lines)
    assert other.recover() == 0 and events(world_a) == []
    assert alive.flush() == 1 and len(events(world_a)) == 1
    alive.close()
    other.close()


@pytest.mark.django_db(transaction=True)
def test_a_write_the_database_refuses_is_kept_and_tried_again(world_a, spool_dir):
    failures = [RuntimeError("the database is down")]

    def flaky(lines):
        if failures:
            raise failures.pop()
        write_lines(lines)

    held = Spool(spool_dir, 3600, write=flaky)
    held.add(lines_for(world_a, ["kept-0", "kept-1"]))
    with pytest.raises(RuntimeError, match="down"):
        held.flush()
    assert (
        held.pending() == 2 and len(list(spool_dir.glob("*.jsonl"))) == 2
    )  # the failed segment and the open one
    held.add(lines_for(world_a, ["kept-2"]))
    assert held.flush() == 3
    assert [e.idempotency_key for e in events(world_a)] == ["kept-0", "kept-1", "kept-2"]
    held.close()


@pytest.mark.django_db(transaction=True)
def test_an_event_whose_project_went_meanwhile_is_kept_without_it_and_a_gone_tenant_s_is_dropped(
    world_a,
):
    with tenant_context(world_a.tenant):
        doomed_project = project_create(tenant=world_a.tenant, name="deleted before the write")
    kept = [
        journal_line(row.values)
        for row in metering._rows(
            world_a.tenant,
            [
                Usage(
                    METER,
                    Decimal(1),
                    idempotency_key="project-gone",
                    project=doomed_project,
                    model=world_a.model.public_id,
                )
            ],
            "serving",
        )
    ]
    doomed_tenant = tenant_create(partner=partner_root(), name="Deleted before the write")
    dropped = [
        journal_line(row.values)
        for row in metering._rows(doomed_tenant, [Usage(METER, Decimal(1))], "serving")
    ]
    type(doomed_project).dangerously_unscoped.filter(pk=doomed_project.pk).delete()
    doomed_tenant.delete()

    write_lines(kept + dropped)

    (event,) = events(world_a)
    assert (
        event.idempotency_key == "project-gone"
        and event.project_id is None
        and event.model == world_a.model.public_id
    )
    assert UsageEvent.dangerously_unscoped.count() == 1  # the deleted tenant's event went with it


def test_a_journal_line_keeps_every_value(world_a):
    (row,) = metering._rows(
        world_a.tenant,
        [
            served(
                world_a,
                "exact",
                at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
                details={"a": [1, "b"]},
            )
        ],
        "serving",
    )
    assert row_of(journal_line(row.values)) == row.values


# --- rate tokens in blocks ------------------------------------------------------------------


def test_rate_tokens_come_a_block_at_a_time_and_never_pass_the_limit(world_a, monkeypatch):
    services.subscribe(world_a.tenant, make_plan("rate-high", requests_per_minute=10_000))
    plan = catalog.standing(world_a.tenant).plan
    now = timezone.now().replace(second=30)
    window = now.replace(second=0, microsecond=0)
    for _ in range(100):
        quotas.take_rate(world_a.tenant, plan, now=now)
    assert (
        RateWindow.objects.get(tenant=world_a.tenant, window_start=window).count
        == 2 * quotas.RATE_BLOCK_MAX
    )  # two statements

    # Near the limit a block no longer fits: tokens come one at a time, and the last one is the limit's.
    quotas._leases.clear()  # another process: nothing leased
    RateWindow.objects.filter(tenant=world_a.tenant).update(count=10_000 - 3)
    for _ in range(3):
        quotas.take_rate(world_a.tenant, plan, now=now)
    with pytest.raises(quotas.Refused) as refused:
        quotas.take_rate(world_a.tenant, plan, now=now)
    assert refused.value.status == 429 and refused.value.retry_after == 30
    assert RateWindow.objects.get(tenant=world_a.tenant, window_start=window).count == 10_000

    # Spent: the counter never goes down within its minute, so the refusals ask the database nothing.
    monkeypatch.setattr(quotas, "_take", lambda *args: pytest.fail("asked the database again"))
    with pytest.raises(quotas.Refused):
        quotas.take_rate(world_a.tenant, plan, now=now + timedelta(seconds=10))
    monkeypatch.undo()
    quotas.take_rate(
        world_a.tenant, plan, now=now + timedelta(seconds=60)
    )  # the next minute lets it in


def test_a_small_limit_is_counted_call_by_call(world_a):
    quotas._leases.clear()
    services.subscribe(world_a.tenant, make_plan("rate-small", requests_per_minute=150))
    now = timezone.now().replace(second=10)
    for _ in range(5):
        quotas.take_rate(world_a.tenant, catalog.standing(world_a.tenant).plan, now=now)
    assert (
        RateWindow.objects.get(tenant=world_a.tenant).count == 5
    )  # one statement a call, nothing leased ahead


def test_a_new_limit_drops_what_was_leased_under_the_old_one(world_a):
    quotas._leases.clear()
    plan = make_plan("rate-change", requests_per_minute=10_000)
    services.subscribe(world_a.tenant, plan)
    now = timezone.now().replace(second=10)
    quotas.take_rate(world_a.tenant, plan, now=now)  # leases a block
    plan.requests_per_minute = 100
    RateWindow.objects.filter(tenant=world_a.tenant).update(count=100)
    with pytest.raises(quotas.Refused):
        quotas.take_rate(world_a.tenant, plan, now=now)  # the lease of the old limit does not count


# --- plans remembered until the catalog changes ---------------------------------------------


def test_a_plan_is_remembered_until_the_catalog_changes_anywhere(world_a, settings):
    settings.BILLING_PLAN_CACHE_SECONDS = 3600
    plan = make_plan("remembered", requests_per_minute=10)
    services.subscribe(world_a.tenant, plan)
    assert catalog.standing(world_a.tenant).plan.requests_per_minute == 10
    version = CatalogVersion.objects.get(pk=1).version

    Plan.objects.filter(pk=plan.pk).update(
        requests_per_minute=20
    )  # no signal: as another process's write
    assert catalog.standing(world_a.tenant).plan.requests_per_minute == 10  # remembered
    CatalogVersion.objects.filter(pk=1).update(version=version + 1)  # that process's signal
    settings.BILLING_PLAN_CACHE_SECONDS = 0.01
    time.sleep(0.02)
    assert catalog.standing(world_a.tenant).plan.requests_per_minute == 20

    settings.BILLING_PLAN_CACHE_SECONDS = 3600
    plan.requests_per_minute = 30
    plan.save()  # here: at once, and the version moves for the others
    assert catalog.standing(world_a.tenant).plan.requests_per_minute == 30
    assert CatalogVersion.objects.get(pk=1).version == version + 2


def test_a_cached_plan_ends_with_its_segment(world_a, settings):
    settings.BILLING_PLAN_CACHE_SECONDS = 3600
    services.subscribe(world_a.tenant, make_plan("segment"))
    current = catalog.standing(world_a.tenant)
    later = current.segment.end + timedelta(seconds=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timezone, "now", lambda: later)
        assert (
            catalog.standing(world_a.tenant).segment.start == current.segment.end
        )  # read again: the next period


# --- closing after a grace ------------------------------------------------------------------


def test_the_scheduled_close_waits_out_the_grace_so_spooled_usage_is_invoiced(world_a, settings):
    settings.BILLING_CLOSE_GRACE_SECONDS = 300
    services.subscribe(
        world_a.tenant,
        make_plan("graced", monthly_fee=Decimal(10)),
        now=datetime(2026, 9, 1, tzinfo=UTC),
    )
    end = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timezone, "now", lambda: end + timedelta(seconds=60))
        assert not [
            i
            for i in invoicing.close_period(tenants=[world_a.tenant])
            if i.period_start == datetime(2026, 10, 1, tzinfo=UTC)
        ]
        patch.setattr(timezone, "now", lambda: end + timedelta(seconds=301))
        invoicing.close_period(tenants=[world_a.tenant])
    assert Invoice.objects.filter(
        tenant=world_a.tenant, period_start=datetime(2026, 10, 1, tzinfo=UTC)
    ).exists()


# --- what must never break a served call ----------------------------------------------------


def test_a_segment_that_cannot_be_opened_leaves_the_spool_as_it_was(
    world_a, spool_dir, monkeypatch
):
    held = Spool(spool_dir, 3600, write=lambda lines: None)
    held.add(lines_for(world_a, ["before"]))
    real = Spool._open_segment
    monkeypatch.setattr(
        Spool,
        "_open_segment",
        lambda self: (_ for _ in ()).throw(OSError(24, "Too many open files")),
    )
    with pytest.raises(OSError):
        held.flush()  # the rotation fails: nothing moved
    monkeypatch.setattr(Spool, "_open_segment", real)
    held.add(lines_for(world_a, ["after"]))  # the open segment still takes lines
    assert held.pending() == 2 and held.flush() == 2
    held.close()


@pytest.mark.django_db(transaction=True)
def test_an_event_the_ledger_refuses_is_kept_aside_and_the_others_written(world_a):
    good = lines_for(world_a, ["good-0", "good-1"])
    bad = lines_for(world_a, ["x" * 300])  # longer than the ledger's key column (200)
    if connection.vendor == "sqlite":
        pytest.skip("SQLite stores a text of any length: nothing to refuse")
    write_lines(good[:1] + bad + good[1:])
    assert [e.idempotency_key for e in events(world_a)] == ["good-0", "good-1"]
    assert (spool.directory() / "refused.jsonl").read_text(encoding="utf-8").endswith(bad[0])


@pytest.mark.django_db(transaction=True)
def test_a_process_exiting_writes_a_late_call_s_events_at_once(world_a, monkeypatch):
    monkeypatch.setattr(spool.process, "exiting", True)
    record_call(world_a.tenant, [served(world_a, "while-exiting")])
    assert [e.idempotency_key for e in events(world_a)] == ["while-exiting"]


def test_each_database_has_its_own_spool_folder(db):
    here = spool.directory()
    name = connection.settings_dict["NAME"]
    try:
        connection.settings_dict["NAME"] = f"{name}-other"  # another database on the same VAR_DIR
        assert spool.directory() != here
    finally:
        connection.settings_dict["NAME"] = name
    assert spool.directory() == here


@pytest.mark.django_db(transaction=True)
def test_a_journal_line_written_before_the_ledger_dropped_its_model_reference_is_still_read(
    world_a,
):
    """A segment left by a process of the previous release holds 15 values per event (with the
    model version's row id); the next release writes it with the model's public id only."""
    (row,) = [r.values for r in metering._rows(world_a.tenant, [served(world_a, "old")], "serving")]
    line = journal_line(row)
    values = json.loads(line)
    values.insert(5, world_a.model.pk)  # the old layout: model_version_id before the model's id
    write_lines([json.dumps(values) + "\n"])
    (event,) = events(world_a)
    assert event.idempotency_key == "old" and event.model == world_a.model.public_id
