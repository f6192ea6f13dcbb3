"""Property tests of the ledger and the invoice arithmetic.

* Over 10,000 distinct usage events, each sent 1–5 times, shuffled and sent concurrently from
  several threads in batches, count once: the invoices bill exactly the distinct events' units
  and amounts computed here to the minor unit (each line rounded once, half up).
* For random quantities, unit prices (up to 9 decimals) and included units in 0-, 2- and
  3-decimal currencies, every issued invoice's lines add up to its total and each line's amount
  is its billable units times its unit price, rounded once, half up.

The expected figures are computed with integers and fractions, not with the billing code's Decimals.
Beside them, minimal tests of what these properties found: a key twice in one call is one event
(and moves a hard-cap counter once); crossing inserts or counter updates never deadlock on
PostgreSQL; a price holds at most 15 significant digits (what SQLite gives back exactly).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from django.db import connection
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from verticals.billing import invoicing, services
from verticals.billing.metering import Usage, record
from verticals.billing.models import Invoice, InvoiceLine, Plan, PlanPrice, UsageCounter, UsageEvent
from verticals.tenancy.models import Partner
from verticals.tenancy.services import partner_root, tenant_create

UTC = UTC
PERIOD = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
CLOSE_AT = PERIOD[1] + timedelta(hours=1)
PERIOD_US = int((PERIOD[1] - PERIOD[0]).total_seconds()) * 10**6
METERS = (
    "inference.requests",
    "textgen.tokens",
    "vision.images",
    "training.cpu_seconds",
    "storage.gb_days",
)
SOURCES = ("serving", "jobs", "external:crm")
CURRENCY = {0: "JPY", 2: "USD", 3: "KWD"}
DISTINCT_EVENTS = 10_000

MICRO, NANO = 10**6, 10**9


# --- the arithmetic, done independently -----------------------------------------------------


def half_up(value: Fraction) -> int:
    """The integer nearest to a non-negative fraction, halves up."""
    whole, rest = divmod(value.numerator, value.denominator)
    return whole + (1 if 2 * rest >= value.denominator else 0)


def minor_of(amount: Fraction, places: int) -> int:
    return half_up(amount * 10**places)


def frac(value: Decimal) -> Fraction:
    return Fraction(value)


def micro_dec(micro: int) -> Decimal:
    return Decimal(micro).scaleb(-6)


def nano_dec(nano: int) -> Decimal:
    return Decimal(nano).scaleb(-9)


def unique_code(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def channel_partner() -> Partner:
    name = unique_code("partner")
    return Partner.objects.create(name=name, brand_name=name, parent=partner_root())


def make_plan(*, places: int, fee_nano: int, cap: str, prices: dict[str, tuple[int, int]]) -> Plan:
    plan = Plan.objects.create(
        code=unique_code("prop"),
        name=unique_code("Plan"),
        currency=CURRENCY[places],
        monthly_fee=nano_dec(fee_nano),
        cap=cap,
    )
    for meter, (included_micro, price_nano) in prices.items():
        PlanPrice.objects.create(
            plan=plan,
            meter_id=meter,
            included=micro_dec(included_micro),
            unit_price=nano_dec(price_nano),
        )
    return plan


def check_invoice_adds_up(
    invoice: Invoice, lines: list[InvoiceLine], shares: dict | None = None
) -> None:
    """Lines sum to the total; each line is its units times its unit price, rounded once, half up."""
    places = {"JPY": 0, "USD": 2, "KWD": 3}[invoice.currency]
    assert invoice.total_minor == sum(line.amount_minor for line in lines), invoice.number
    for line in lines:
        if line.kind == InvoiceLine.Kind.USAGE:
            assert line.billable == max(Decimal(0), line.quantity - line.included)
            assert line.amount_minor == minor_of(
                frac(line.billable) * frac(line.unit_price), places
            ), (invoice.number, line.meter)
        elif line.kind == InvoiceLine.Kind.FEE:
            # A prorated fee is the exact share times the fee; the line shows the share to 6 decimals.
            share = (shares or {}).get((line.plan_id, line.tenant_id), Fraction(1))
            assert line.amount_minor == minor_of(share * frac(line.unit_price), places), (
                invoice.number,
                line.description,
            )
            assert line.quantity == micro_dec(half_up(share * MICRO))
    if invoice.kind == Invoice.Kind.WHOLESALE:
        assert invoice.retail_total_minor == sum(line.retail_amount_minor for line in lines)


# --- (a) 10,000 distinct events, duplicated, shuffled, sent concurrently ------------------------


@dataclass
class TenantShape:
    places: int
    cap: str
    fee_nano: int
    meters: list[str]  # the meters its events use
    prices: dict[str, tuple[int, int]]  # meter -> (included micro-units, unit price in nano-units)


@dataclass
class LedgerShape:
    seed: int
    tenants: list[TenantShape]
    copy_weights: list[int]  # how often an event is sent 1, 2, 3, 4, 5 times
    threads: int
    batch: int


@st.composite
def tenant_shapes(draw) -> TenantShape:
    meters = draw(st.lists(st.sampled_from(METERS), min_size=1, max_size=4, unique=True))
    priced = draw(
        st.lists(st.sampled_from(METERS), max_size=len(METERS), unique=True)
    )  # some used meters unpriced
    prices = {
        meter: (draw(st.integers(0, 3000 * MICRO)), draw(st.integers(0, 5 * NANO)))
        for meter in priced
    }
    return TenantShape(
        places=draw(st.sampled_from(sorted(CURRENCY))),
        cap=draw(st.sampled_from(["soft", "hard"])),
        fee_nano=draw(st.integers(0, 10**5 * NANO)),
        meters=meters,
        prices=prices,
    )


@st.composite
def ledger_shapes(draw) -> LedgerShape:
    return LedgerShape(
        seed=draw(st.integers(0, 2**32 - 1)),
        tenants=draw(st.lists(tenant_shapes(), min_size=2, max_size=4)),
        copy_weights=draw(st.lists(st.integers(0, 10), min_size=5, max_size=5).filter(any)),
        threads=draw(st.integers(2, 6)),
        batch=draw(
            st.sampled_from([100, 300, 700])
        ),  # 700: one record() call inserts in two statements
    )


def random_quantity(rng: random.Random) -> int:
    """Micro-units: fractions of a unit, a few units with 6 decimals, whole units."""
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randrange(1, MICRO)
    if kind == 1:
        return rng.randrange(1, 5 * MICRO)
    return rng.randrange(1, 4) * MICRO


def generate_events(shape: LedgerShape) -> tuple[dict, dict]:
    """The distinct events in the period, (tenant, source, key) -> (meter, micro-units, time), and a
    few just outside it (which no invoice of the period may bill)."""
    rng = random.Random(shape.seed)
    inside: dict[tuple, tuple] = {}
    tenants = len(shape.tenants)
    while len(inside) < DISTINCT_EVENTS:
        # Keys are drawn from a small space, so that one key often names events of several tenants and sources.
        event = (
            rng.randrange(tenants),
            rng.choice(SOURCES),
            f"ev-{rng.randrange(2 * DISTINCT_EVENTS)}",
        )
        if event in inside:
            continue
        roll = rng.random()
        at_us = 0 if roll < 0.002 else PERIOD_US - 1 if roll < 0.004 else rng.randrange(PERIOD_US)
        inside[event] = (
            rng.choice(shape.tenants[event[0]].meters),
            random_quantity(rng),
            PERIOD[0] + timedelta(microseconds=at_us),
        )
    outside: dict[tuple, tuple] = {}
    for index, tenant in enumerate(shape.tenants):
        if tenant.cap == "soft":
            for n, at in enumerate(
                (PERIOD[0] - timedelta(microseconds=1), PERIOD[1], PERIOD[1] + timedelta(days=3))
            ):
                outside[(index, "serving", f"out-{n}")] = (tenant.meters[0], 7 * MICRO, at)
    return inside, outside


def send_concurrently(tenants, events: dict, shape: LedgerShape) -> list[tuple]:
    """Each event 1–5 times, all shuffled, split over threads; each thread batches by tenant and
    source (what one record() call takes). Returns the (tenant, source, key) that calls said were new."""
    rng = random.Random(shape.seed + 1)
    sends = []
    for event in events:
        sends.extend([event] * rng.choices(range(1, 6), weights=shape.copy_weights)[0])
    rng.shuffle(sends)
    chunks = [sends[i :: shape.threads] for i in range(shape.threads)]
    start = threading.Barrier(shape.threads)
    new: list[tuple] = []
    failures: list[BaseException] = []

    def send(chunk):
        try:
            start.wait(timeout=30)
            pending: dict[tuple, list] = defaultdict(list)

            def flush(index, source):
                items = [
                    Usage(meter, micro_dec(micro), idempotency_key=key, occurred_at=at)
                    for key, (meter, micro, at) in pending.pop((index, source))
                ]
                for key in record(tenants[index], items, source=source):
                    new.append((index, source, key))

            for event in chunk:
                index, source, key = event
                pending[(index, source)].append((key, events[event]))
                if len(pending[(index, source)]) >= shape.batch:
                    flush(index, source)
            for index, source in list(pending):
                flush(index, source)
        except BaseException as exc:  # noqa: B036 - reported by the test below
            failures.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=send, args=(chunk,)) for chunk in chunks]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
    return new


@pytest.mark.django_db(transaction=True)
# No shrinking: an example is 10,000 events and seconds of work; the falsifying shape is printed as drawn.
@settings(
    max_examples=2,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(shape=ledger_shapes())
def test_duplicated_shuffled_concurrent_events_are_billed_exactly_once(shape):
    partner = channel_partner()
    tenants, plans = [], []
    for index, tenant_shape in enumerate(shape.tenants):
        tenant = tenant_create(partner=partner, name=f"Tenant {index}")
        plan = make_plan(
            places=tenant_shape.places,
            fee_nano=tenant_shape.fee_nano,
            cap=tenant_shape.cap,
            prices=tenant_shape.prices,
        )
        services.subscribe(tenant, plan, now=PERIOD[0])
        tenants.append(tenant)
        plans.append(plan)
    inside, outside = generate_events(shape)
    events = {**inside, **outside}

    new = send_concurrently(tenants, events, shape)

    # Every distinct event was new to exactly one call, and is in the ledger once.
    assert max(Counter(new).values()) == 1, "an event was counted as new twice"
    assert set(new) == set(events)
    ids = [tenant.pk for tenant in tenants]
    assert UsageEvent.dangerously_unscoped.filter(tenant_id__in=ids).count() == len(events)

    used: dict[tuple[int, str], int] = defaultdict(
        int
    )  # (tenant index, meter) -> micro-units in the period
    for (index, _source, _key), (meter, micro, _at) in inside.items():
        used[(index, meter)] += micro

    issued = invoicing.close_period(CLOSE_AT, tenants=tenants)
    retail = {
        invoice.tenant_id: invoice for invoice in issued if invoice.kind == Invoice.Kind.RETAIL
    }
    assert sorted(retail) == sorted(ids)
    retail_by_currency: dict[str, int] = defaultdict(int)
    for index, (tenant, tenant_shape) in enumerate(zip(tenants, shape.tenants, strict=True)):
        invoice = retail[tenant.pk]
        places = tenant_shape.places
        lines = list(invoice.lines.order_by("position"))
        check_invoice_adds_up(invoice, lines)
        assert (
            invoice.currency == CURRENCY[places]
            and (invoice.period_start, invoice.period_end) == PERIOD
        )
        fee, usage = lines[0], lines[1:]
        assert fee.kind == InvoiceLine.Kind.FEE and fee.amount_minor == minor_of(
            Fraction(tenant_shape.fee_nano, NANO), places
        )
        expected = {}
        for meter in sorted(m for (i, m) in used if i == index):
            included, price = tenant_shape.prices.get(meter, (0, 0))
            billable = max(0, used[(index, meter)] - included)
            expected[meter] = (
                micro_dec(used[(index, meter)]),
                micro_dec(billable),
                minor_of(Fraction(billable * price, MICRO * NANO), places),
            )
        billed = {line.meter: (line.quantity, line.billable, line.amount_minor) for line in usage}
        assert billed == expected
        assert invoice.total_minor == fee.amount_minor + sum(
            amount for _, _, amount in expected.values()
        )
        retail_by_currency[invoice.currency] += invoice.total_minor

        # Usage of an ended period is billed, and moves no hard-cap counter: a cap counts the segment
        # the tenant is in now (its counters under concurrency: tests/billing/test_limits.py).
        assert not UsageCounter.dangerously_unscoped.filter(
            tenant_id=tenant.pk, period_start__lt=PERIOD[1]
        ).exists()

    # The partner's price book is empty: it pays list prices, so its wholesale invoice per currency
    # is what it billed its tenants.
    wholesale = [invoice for invoice in issued if invoice.kind == Invoice.Kind.WHOLESALE]
    assert {invoice.currency: invoice.total_minor for invoice in wholesale} == dict(
        retail_by_currency
    )
    for invoice in wholesale:
        check_invoice_adds_up(invoice, list(invoice.lines.all()))
        assert (
            invoice.partner_id == partner.pk and invoice.retail_total_minor == invoice.total_minor
        )
    assert invoicing.close_period(CLOSE_AT, tenants=tenants) == []


def test_an_event_twice_in_one_call_moves_the_hard_cap_counter_once(world_a):
    """Found by the test above: record() raises the counter once per row whose key was new, so a key
    sent twice in one call (or in two of its insert batches) counts twice against the hard cap."""
    plan = make_plan(
        places=2, fee_nano=0, cap="hard", prices={"inference.requests": (10 * MICRO, 0)}
    )
    services.subscribe(world_a.tenant, plan)
    again = Usage("inference.requests", Decimal(1), idempotency_key="k")
    assert record(world_a.tenant, [again, again], source="external:crm") == ["k"]
    assert UsageEvent.dangerously_unscoped.filter(tenant_id=world_a.tenant.pk).count() == 1
    assert (
        UsageCounter.dangerously_unscoped.get(tenant_id=world_a.tenant.pk).quantity == 1
    )  # 2 before the fix


@pytest.mark.django_db(transaction=True)
def test_two_calls_sending_the_same_events_in_another_order_both_succeed(monkeypatch):
    """Found by the concurrent test above on PostgreSQL: record() inserts rows in the order given, so
    two transactions that insert the same keys in opposite orders wait on each other ("deadlock
    detected", a 500 for one sender). The insert statements are made one row each and held at a
    gate until both transactions have inserted their first row, which makes the crossing certain."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "SQLite takes the write lock at BEGIN (IMMEDIATE): its writers never interleave"
        )
    from verticals.billing import metering

    plan = make_plan(places=2, fee_nano=0, cap="soft", prices={})
    tenant = tenant_create(partner=partner_root(), name="Crossing")
    services.subscribe(tenant, plan)
    insert, gate = metering._insert_new, threading.Barrier(2)

    def insert_then_wait(rows):
        keys = insert(rows)
        try:
            gate.wait(
                timeout=3
            )  # with keys locked in one order for everyone, the second sender waits on the first instead
        except threading.BrokenBarrierError:
            pass
        return keys

    monkeypatch.setattr(metering, "BATCH", 1)
    monkeypatch.setattr(metering, "_insert_new", insert_then_wait)
    new, failures = [], []

    def send(keys):
        try:
            new.extend(
                record(
                    tenant,
                    [Usage("inference.requests", Decimal(1), idempotency_key=key) for key in keys],
                    source="serving",
                )
            )
        except Exception as exc:  # noqa: BLE001 - the assertion names it
            failures.append(exc)
        finally:
            connection.close()

    senders = [threading.Thread(target=send, args=(keys,)) for keys in (["k1", "k2"], ["k2", "k1"])]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert failures == []  # before the fix: [OperationalError('deadlock detected …')]
    assert sorted(new) == ["k1", "k2"]
    assert UsageEvent.dangerously_unscoped.filter(tenant_id=tenant.pk).count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_hard_capped_calls_raising_counters_in_another_order_both_succeed(monkeypatch):
    """The same crossing on the hard-cap counters: record() raises them in the order of its rows'
    meters, so two calls whose events name two meters in opposite orders can wait on each other.
    Each call is held at a gate after its first counter UPDATE."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "SQLite takes the write lock at BEGIN (IMMEDIATE): its writers never interleave"
        )
    from verticals.billing import metering

    plan = make_plan(
        places=2,
        fee_nano=0,
        cap="hard",
        prices={"inference.requests": (100 * MICRO, 0), "vision.images": (100 * MICRO, 0)},
    )
    tenant = tenant_create(partner=partner_root(), name="Crossing counters")
    services.subscribe(tenant, plan)
    for meter in ("inference.requests", "vision.images"):  # both counters exist before the race
        record(
            tenant, [Usage(meter, Decimal(1), idempotency_key=f"first-{meter}")], source="serving"
        )
    to_micro, gate, calls = metering.to_micro, threading.Barrier(2), threading.local()

    def to_micro_then_wait(value):  # called once per counter UPDATE, just before it
        calls.n = getattr(calls, "n", 0) + 1
        if calls.n == 2:
            try:
                gate.wait(timeout=3)
            except threading.BrokenBarrierError:
                pass
        return to_micro(value)

    monkeypatch.setattr(metering, "to_micro", to_micro_then_wait)
    failures = []

    def send(meters):
        try:
            record(
                tenant,
                [
                    Usage(meter, Decimal(1), idempotency_key=f"{meters[0]}-{n}")
                    for n, meter in enumerate(meters)
                ],
                source="serving",
            )
        except Exception as exc:  # noqa: BLE001 - the assertion names it
            failures.append(exc)
        finally:
            connection.close()

    senders = [
        threading.Thread(target=send, args=(meters,))
        for meters in (
            ["inference.requests", "vision.images"],
            ["vision.images", "inference.requests"],
        )
    ]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert failures == []  # before the fix: [OperationalError('deadlock detected …')]
    counters = dict(
        UsageCounter.dangerously_unscoped.filter(tenant_id=tenant.pk).values_list(
            "meter", "quantity"
        )
    )
    assert counters == {"inference.requests": 3, "vision.images": 3}


@pytest.mark.django_db
def test_a_price_is_stored_exactly_and_one_too_precise_to_be_is_refused():
    """Django reads a decimal column on SQLite through a float keeping 15 significant digits: a
    price with more would come back altered there, so every price field refuses more than 15."""
    from django.core.exceptions import ValidationError

    exact = Decimal("123456.123456789")  # 15 significant digits
    plan = make_plan(
        places=2,
        fee_nano=int(exact * NANO),
        cap="soft",
        prices={"inference.requests": (0, int(exact * NANO))},
    )
    assert Plan.objects.get(pk=plan.pk).monthly_fee == exact
    assert PlanPrice.objects.get(plan=plan).unit_price == exact
    plan.monthly_fee = Decimal("1234567.123456789")  # 16: SQLite would give back 1234567.123456790
    with pytest.raises(ValidationError, match="more than 15 significant digits"):
        plan.full_clean()


# --- (b) each line rounds once; lines add up to the total, in 0-, 2- and 3-decimal currencies ------


@dataclass
class MeterCase:
    meter: str
    included_micro: int
    price_nano: int
    events: list[tuple[int, int]]  # (micro-units, second of the period)
    wholesale_nano: int | None  # the partner's price book (channel tenants), None: no entry
    retail_nano: int | None


@dataclass
class InvoiceCase:
    places: int
    fee_nano: int
    meters: list[MeterCase]
    channel: bool
    change_at: int | None  # second of the period the tenant moves to a second plan
    second_fee_nano: int
    second_prices: dict[str, tuple[int, int]]


PERIOD_SECONDS = PERIOD_US // 10**6
# Up to 15 significant digits: SQLite keeps no more of a decimal column (Django reads it through a float).
prices_nano = st.one_of(
    st.integers(0, 10 * NANO), st.integers(0, 999_999 * NANO + NANO - 1), st.integers(0, 1000)
)
quantities_micro = st.one_of(
    st.integers(0, 10 * MICRO),
    st.integers(0, 10**7 * MICRO),
    st.sampled_from([MICRO // 2, 5, 500_000_001]),
)


@st.composite
def meter_cases(draw, meter: str, channel: bool) -> MeterCase:
    price = draw(prices_nano)
    wholesale = retail = None
    if channel and draw(st.booleans()):
        wholesale = draw(st.integers(0, price))
        retail = draw(st.one_of(st.none(), st.integers(wholesale, wholesale + 10 * NANO)))
    return MeterCase(
        meter=meter,
        included_micro=draw(quantities_micro),
        price_nano=price,
        events=draw(
            st.lists(st.tuples(quantities_micro, st.integers(0, PERIOD_SECONDS - 1)), max_size=4)
        ),
        wholesale_nano=wholesale,
        retail_nano=retail,
    )


@st.composite
def invoice_cases(draw) -> InvoiceCase:
    channel = draw(st.booleans())
    meters = draw(st.lists(st.sampled_from(METERS), min_size=1, max_size=3, unique=True))
    changes = draw(st.booleans())
    return InvoiceCase(
        places=draw(st.sampled_from(sorted(CURRENCY))),
        fee_nano=draw(prices_nano),
        meters=[draw(meter_cases(meter, channel)) for meter in meters],
        channel=channel,
        change_at=draw(st.integers(1, PERIOD_SECONDS - 1)) if changes else None,
        second_fee_nano=draw(prices_nano),
        second_prices={
            meter: (draw(quantities_micro), draw(prices_nano))
            for meter in meters
            if draw(st.booleans())
        },
    )


def expected_retail_lines(case: InvoiceCase) -> list[tuple]:
    """(kind, meter, quantity, included, billable, unit price, amount) of each line, as the docs say."""
    places = case.places
    segments = [
        (
            0,
            case.change_at or PERIOD_SECONDS,
            case.fee_nano,
            {m.meter: (m.included_micro, m.price_nano) for m in case.meters},
        )
    ]
    if case.change_at is not None:
        segments.append((case.change_at, PERIOD_SECONDS, case.second_fee_nano, case.second_prices))
    book = {m.meter: m for m in case.meters}
    lines = []
    for index, (start, end, fee_nano, prices) in enumerate(segments):
        share = Fraction(end - start, PERIOD_SECONDS)
        lines.append(
            (
                "fee",
                "",
                micro_dec(half_up(share * MICRO)),
                Decimal(0),
                Decimal(0),
                nano_dec(fee_nano),
                minor_of(share * Fraction(fee_nano, NANO), places),
            )
        )
        used: dict[str, int] = defaultdict(int)
        for m in case.meters:
            for micro, second in m.events:
                if start <= second < end:
                    used[m.meter] += micro
        for meter in sorted(used):
            included_micro, list_nano = prices.get(meter, (0, 0))
            price = list_nano
            entry = book[meter]
            if (
                case.channel and index == 0 and entry.wholesale_nano is not None
            ):  # the price book prices the first plan only
                price = max(
                    entry.retail_nano if entry.retail_nano is not None else list_nano,
                    entry.wholesale_nano,
                )
            included = half_up(share * included_micro)
            billable = max(0, used[meter] - included)
            lines.append(
                (
                    "usage",
                    meter,
                    micro_dec(used[meter]),
                    micro_dec(included),
                    micro_dec(billable),
                    nano_dec(price),
                    minor_of(Fraction(billable * price, MICRO * NANO), places),
                )
            )
    return lines


@pytest.mark.django_db
@settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=invoice_cases())
def test_every_invoice_line_is_rounded_once_and_the_lines_add_up(case):
    partner = channel_partner() if case.channel else partner_root()
    tenant = tenant_create(partner=partner, name=unique_code("Tenant"))
    first = make_plan(
        places=case.places,
        fee_nano=case.fee_nano,
        cap="soft",
        prices={m.meter: (m.included_micro, m.price_nano) for m in case.meters},
    )
    for m in case.meters:
        if case.channel and m.wholesale_nano is not None:
            services.set_wholesale(partner, first, m.meter, nano_dec(m.wholesale_nano))
            services.set_retail(
                partner, first, m.meter, None if m.retail_nano is None else nano_dec(m.retail_nano)
            )
    services.subscribe(tenant, first, now=PERIOD[0])
    shares = {(first.pk, None): Fraction(1)}
    if case.change_at is not None:
        second = make_plan(
            places=case.places, fee_nano=case.second_fee_nano, cap="soft", prices=case.second_prices
        )
        services.subscribe(tenant, second, now=PERIOD[0] + timedelta(seconds=case.change_at))
        shares = {
            (first.pk, None): Fraction(case.change_at, PERIOD_SECONDS),
            (second.pk, None): Fraction(PERIOD_SECONDS - case.change_at, PERIOD_SECONDS),
        }
    for m in case.meters:
        record(
            tenant,
            [
                Usage(
                    m.meter,
                    micro_dec(micro),
                    idempotency_key=f"{m.meter}-{n}",
                    occurred_at=PERIOD[0] + timedelta(seconds=s),
                )
                for n, (micro, s) in enumerate(m.events)
            ],
            source="external:prop",
        )

    issued = invoicing.close_period(CLOSE_AT, tenants=[tenant])
    retail = [invoice for invoice in issued if invoice.kind == Invoice.Kind.RETAIL]
    assert len(retail) == 1
    lines = list(retail[0].lines.order_by("position"))
    check_invoice_adds_up(retail[0], lines, shares)
    assert [
        (
            line.kind,
            line.meter,
            line.quantity,
            line.included,
            line.billable,
            line.unit_price,
            line.amount_minor,
        )
        for line in lines
    ] == expected_retail_lines(case)

    wholesale = [invoice for invoice in issued if invoice.kind == Invoice.Kind.WHOLESALE]
    assert len(wholesale) == (1 if case.channel else 0)
    for invoice in wholesale:
        wholesale_lines = list(invoice.lines.order_by("position"))
        check_invoice_adds_up(
            invoice,
            wholesale_lines,
            {(plan, tenant.pk): share for (plan, _), share in shares.items()},
        )
        assert invoice.retail_total_minor == retail[0].total_minor
        assert (
            invoice.total_minor <= retail[0].total_minor
        )  # a retail price is never below wholesale
