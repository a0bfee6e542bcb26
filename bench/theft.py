"""Theft detection scored against the emulator's ground truth: precision, recall, false alarms.

Each scenario gets a fresh migrated database (bench.servers), dropped afterwards. Its
tenants' reads come from the generator (``producer.batch.generate_batch``, events
applied) and are written by the consumer's own statement (``insert_batch``, rollups
included) over WRITERS connections at once; the KPI features are refreshed as the API
does (``refresh_stale_days``), and each scored day's suspects and insufficient-data
meter-days are read through the queries the API uses. Truth is recomputed from the
events (bench/theft_score.py). 5,000 meters on 25 feeders, 15-minute reads, day 1 =
2026-03-01 (UTC); a fixed tenant id fixes the seed, so every run scores the same.

- clean: no events; 8 days; days 7 and 8 scored: false alarms only.
- shares: h1–h6, each on three feeders of its own, at a 10% share (one tenant) and a
  2% share (another); 7 honest days, theft during day 8 exactly; day 8 scored.
- diverse: PV on 8% of meters, EV charging on 5%, 1% of homes vacant throughout, and
  h1–h6 at 10% on six feeders on day 8; days 7 and 8 scored, false alarms per group:
  vacant, pv, ev, clean.
- confounded: h1–h6 at 10% on six feeders on day 8, with comms outages (no row; 1–8 h,
  fraction 0.3–0.5; every other one buffered: its reads come after it, late) and voltage
  sags at various times of day on some theft feeders and some clean ones; honest false
  alarms per group: outage, sag, clean.
- long: h1–h6 at 10%, one event each lasting days 3–10 of a 10-day history; days
  3..10 scored.

diverse, confounded and long each run a second tenant at a 2% share (suffix _2), each
pattern on three feeders, so that every fleet is scored at both shares.

Scores per scored day: per pattern the thieves (members of a theft event covering the
day), the suspects on its feeders (flags attributed by feeder), hits, precision and
recall; per honest group the meter-days, alarms and their rate, and the meter-days
reported as insufficient data (never alarms; recall counts judged thieves only).
Targets: precision ≥ 0.8 and recall ≥ 0.9 per pattern at a 10% share (shares,
confounded, long: every day 3..10 there), recall ≥ 0.8 at 2%, honest false alarms
≤ 0.5% of meter-days in every group.

In ``python -m bench``'s list: the four scenarios take about 6 minutes on 2 shared
cores (docs/benchmarks.md has each one's time).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from api.kpi_refresh import refresh_stale_days
from bench.servers import bench_services
from bench.theft_events import confounders, event, thefts
from bench.theft_score import (
    EV,
    FEEDERS,
    OUTAGE,
    PV,
    SAG,
    VACANT,
    Case,
    GroupScore,
    PatternScore,
    Target,
    Verdicts,
    day_start,
    group_table,
    pattern_table,
    score_day,
    targets_line,
)
from consumer.ingest import insert_batch
from gridlens.connections import postgres_pool
from gridlens.sqlfiles import query
from producer import backlog
from producer.batch import generate_batch
from producer.diversity import FleetMix
from producer.events import Event, EventType
from producer.fleet import IntArray, feeder_meters
from producer.request import PublishRequest

METERS = 5_000
INTERVAL_MINUTES = 15
WRITERS = 4
BATCH_METERS = 500

PRECISION_10 = Target("precision ≥ 0.8 per pattern (10% share)", "precision", 0.8)
RECALL_10 = Target("recall ≥ 0.9 per pattern (10% share)", "recall", 0.9)
RECALL_2 = Target("recall ≥ 0.8 per pattern (2% share)", "recall", 0.8)
RECALL_LONG = Target("recall ≥ 0.9 per pattern on every day 3..10", "recall", 0.9)
RECALL_LONG_2 = Target("recall ≥ 0.8 per pattern on every day 3..10 (2% share)", "recall", 0.8)
FALSE_ALARMS = Target(
    "honest false alarms ≤ 0.5% per group and day", "false_alarm_rate", 0.005, at_most=True
)


# ---------------------------------------------------------------- scenarios


def clean(meters: int) -> tuple[Case, ...]:
    return (Case("THEFT_CLEAN", meters, 8, (7, 8), targets=(FALSE_ALARMS,)),)


def shares(meters: int) -> tuple[Case, ...]:
    feeders = [(n, n + 6, n + 12) for n in range(1, 7)]  # 18 theft feeders, 7 clean
    return tuple(
        Case(tenant, meters, 8, (8,), thefts(tenant, share, feeders, 8, 8), targets=targets)
        for tenant, share, targets in (
            ("THEFT_SHARES_10", 0.10, (PRECISION_10, RECALL_10, FALSE_ALARMS)),
            ("THEFT_SHARES_2", 0.02, (RECALL_2, FALSE_ALARMS)),
        )
    )


# Each fleet at both shares: at 10% one feeder a pattern, at 2% three (enough thieves to score).
AT_10 = [(2 * n,) for n in range(1, 7)]
AT_2 = [(2 * n - 1, 2 * n, 2 * n + 12) for n in range(1, 7)]
SHARES = (("", 0.10, AT_10, (PRECISION_10, RECALL_10)), ("_2", 0.02, AT_2, (RECALL_2,)))


def confounded(meters: int) -> tuple[Case, ...]:
    cases = []
    for suffix, share, feeders, targets in SHARES:
        tenant = "THEFT_CONFOUNDED" + suffix
        events = thefts(tenant, share, feeders, 8, 8) + confounders(tenant)
        groups = (OUTAGE, SAG)
        cases.append(Case(tenant, meters, 8, (8,), events, groups, (*targets, FALSE_ALARMS)))
    return tuple(cases)


def long(meters: int) -> tuple[Case, ...]:
    cases = []
    for suffix, share, feeders, targets in (
        ("", 0.10, [(3 * n,) for n in range(1, 7)], (PRECISION_10, RECALL_LONG)),
        ("_2", 0.02, [(n, n + 6, n + 12) for n in range(1, 7)], (RECALL_LONG_2,)),
    ):
        tenant = "THEFT_LONG" + suffix
        theft = thefts(tenant, share, feeders, 3, 10)
        cases.append(
            Case(tenant, meters, 10, tuple(range(3, 11)), theft, targets=(*targets, FALSE_ALARMS))
        )
    return tuple(cases)


def diverse(meters: int) -> tuple[Case, ...]:
    """PV 8%, EV 5%, vacant homes 1% (every feeder, the whole history), theft on day 8."""
    cases = []
    mix = FleetMix(pv_share=0.08, ev_share=0.05)
    for suffix, share, feeders, targets in SHARES:
        tenant = "THEFT_DIVERSE" + suffix
        vacancies = tuple(
            event(tenant, 4_000 + f, EventType.VACANCY, f, day=1, hours=24 * 8, fraction=0.01)
            for f in range(1, FEEDERS + 1)
        )
        events = thefts(tenant, share, feeders, 8, 8) + vacancies
        groups = (VACANT, PV, EV)
        cases.append(Case(tenant, meters, 8, (7, 8), events, groups, (*targets, FALSE_ALARMS), mix))
    return tuple(cases)


SCENARIOS: dict[str, Callable[[int], tuple[Case, ...]]] = {
    "clean": clean,
    "shares": shares,
    "diverse": diverse,
    "confounded": confounded,
    "long": long,
}


# ---------------------------------------------------------------- running


async def write(database_url: str, cases: Sequence[Case]) -> int:
    """Every interval of every case's history, WRITERS inserts at once; the rows written.
    A buffered outage's missed reads are written late, with the interval after it, as the
    publisher sends them (producer/backlog.py)."""
    jobs: asyncio.Queue[tuple[Case, datetime, int, IntArray, bool, tuple[Event, ...]]]
    jobs = asyncio.Queue()
    for case in cases:
        steps = case.days * 24 * 60 // INTERVAL_MINUTES
        for step in range(1, steps + 1):
            read_at = day_start(1) + timedelta(minutes=INTERVAL_MINUTES * step)
            for feeder in range(1, FEEDERS + 1):
                meters = feeder_meters(feeder, 1, case.meters, FEEDERS)
                for first in range(0, len(meters), BATCH_METERS):
                    batch = meters[first : first + BATCH_METERS]
                    jobs.put_nowait((case, read_at, feeder, batch, False, case.events))
            publish = request(case, read_at)
            as_read = tuple(backlog.as_read(case.events, publish))
            for late in backlog.late_jobs(publish, case.events, 1, case.meters):
                jobs.put_nowait((case, late.read_at, late.feeder, late.meters, True, as_read))
    rows = 0

    async def writer() -> None:
        nonlocal rows
        while not jobs.empty():
            case, read_at, feeder, meters, late, events = jobs.get_nowait()
            batch = generate_batch(
                publish_id="theft-bench",
                tenant_id=case.tenant,
                feeder=feeder,
                meter_numbers=meters,
                read_at=read_at,
                interval_minutes=INTERVAL_MINUTES,
                events=events,
                mix=case.mix,
                late=late,
            )
            if len(batch):
                new_rows = await insert_batch(pool, batch)  # `rows += await …` loses updates
                rows += new_rows

    async with postgres_pool(database_url, max_size=WRITERS, autocommit=True) as pool:
        await asyncio.gather(*(writer() for _ in range(WRITERS)))
    return rows


def request(case: Case, read_at: datetime) -> PublishRequest:
    """The publish of one interval of the case's whole fleet, as the API would parse it."""
    return PublishRequest(
        tenant_id=case.tenant,
        interval_minutes=INTERVAL_MINUTES,
        batch_size=BATCH_METERS,
        meter_count=case.meters,
        feeder_count=FEEDERS,
        dry_run=False,
        read_at=read_at,
        mix=case.mix,
    )


async def verdicts(database_url: str, case: Case, day: int) -> Verdicts:
    """The day's suspects and insufficient-data meter-days, through the API's queries."""
    params = {"tenant_id": case.tenant, "day": day_start(day)}
    async with postgres_pool(database_url, max_size=1) as pool, pool.connection() as conn:
        suspects = await (await conn.execute(query("theft_suspects"), params)).fetchall()
        unjudged = await (await conn.execute(query("insufficient_data"), params)).fetchall()
    return Verdicts(
        flagged={row[0]: row[1] for row in suspects}, unjudged={row[0] for row in unjudged}
    )


async def fill(database_url: str, cases: Sequence[Case]) -> None:
    """The cases' histories written, then their KPI features refreshed, both timed."""
    for case in cases:
        print(
            f"tenant {case.tenant} (seed {case.seed}): {case.meters:,} meters on {FEEDERS}"
            f" feeders, {case.days} days of {INTERVAL_MINUTES}-minute reads from"
            f" {day_start(1):%Y-%m-%d}, {len(case.events)} events"
        )
    started = time.perf_counter()
    rows = await write(database_url, cases)
    written = time.perf_counter() - started
    started = time.perf_counter()
    async with postgres_pool(database_url, max_size=1) as pool:
        refreshed = await refresh_stale_days(pool)  # which analyzes after many days
    print(
        f"  {rows:,} rows written in {written:.0f} s ({rows / written:,.0f} rows/s, {WRITERS}"
        f" writers); features of {len(refreshed)} tenant-days refreshed and analyzed in"
        f" {time.perf_counter() - started:.1f} s"
    )


async def score(database_url: str, case: Case) -> list[PatternScore | GroupScore]:
    """The case's scored days, printed as two tables; the scores."""
    started = time.perf_counter()
    patterns: list[PatternScore] = []
    groups: list[GroupScore] = []
    for day in case.scored_days:
        day_patterns, day_groups = score_day(case, day, await verdicts(database_url, case, day))
        patterns += day_patterns
        groups += day_groups
    print(
        f"{case.tenant}, day(s) {', '.join(map(str, case.scored_days))}"
        f" (read and scored in {time.perf_counter() - started:.1f} s):"
    )
    print("\n".join((pattern_table(patterns) if patterns else []) + group_table(groups)))
    return [*patterns, *groups]


async def measure(database_url: str, name: str, cases: Sequence[Case]) -> None:
    await fill(database_url, cases)
    results = [await score(database_url, case) for case in cases]
    print(f"{name} {targets_line(cases, results)}")


def run(name: str, meters: int) -> float:
    """One scenario in a database of its own; its wall time in seconds."""
    started = time.perf_counter()
    cases = SCENARIOS[name](meters)
    print(f"== theft {name}")
    with bench_services() as urls:
        asyncio.run(measure(urls.database_url, name, cases))
    elapsed = time.perf_counter() - started
    print(f"{name}: {elapsed:.0f} s\n")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.theft [scenario ...] [--meters N]``; none named: all of them."""
    parser = argparse.ArgumentParser(prog="python -m bench.theft", description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help=", ".join(SCENARIOS))
    parser.add_argument("--meters", type=int, default=METERS, help="meters per tenant")
    args = parser.parse_args([] if argv is None else argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.meters < FEEDERS:
        parser.error(f"--meters must be at least {FEEDERS} (one a feeder)")
    for name in args.scenarios or SCENARIOS:
        run(name, args.meters)


if __name__ == "__main__":
    main(sys.argv[1:])
