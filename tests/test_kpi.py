"""KPI views and quickcheck over real PostgreSQL, and theft detection scored against the
emulator's ground truth."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from api import kpi_judge, kpi_refresh
from api.kpi_refresh import refresh_stale_days
from consumer.ingest import insert_batch
from gridlens.sqlfiles import query
from producer.batch import generate_batch
from producer.events import Event, EventType, members
from producer.fleet import feeder_meters
from producer.randomness import text_seed

FEEDERS = 25
DAY = datetime(2026, 3, 5, tzinfo=UTC)  # the theft day; three honest days before it


async def refresh_until_current(pool: AsyncConnectionPool[Any], tenant: str) -> None:
    """Refresh until none of the tenant's days is stale: the background pass of an app
    still running may hold the refresh lock (this call then returns at once)."""
    for _ in range(600):
        await refresh_stale_days(pool)
        async with pool.connection() as conn:
            stale = await (await conn.execute(query("stale_days"))).fetchall()
        if all(row[0] != tenant for row in stale):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{tenant}'s KPI features still stale")


async def ingest(
    pool: AsyncConnectionPool[Any],
    tenant: str,
    meters: int,
    start: datetime,
    intervals: int,
    events: tuple[Event, ...] = (),
    interval_minutes: int = 15,
    feeders: int = FEEDERS,
) -> None:
    """Store what the pipeline would store for ``intervals`` reads after ``start``."""
    for step in range(1, intervals + 1):
        read_at = start + timedelta(minutes=interval_minutes * step)
        for feeder in range(1, feeders + 1):
            batch = generate_batch(
                publish_id="kpi",
                tenant_id=tenant,
                feeder=feeder,
                meter_numbers=feeder_meters(feeder, 1, meters, feeders),
                read_at=read_at,
                interval_minutes=interval_minutes,
                events=events,
            )
            if len(batch):
                await insert_batch(pool, batch)


def truth_of(seed: int, event: Event, meters: int, feeders: int = FEEDERS) -> set[str]:
    """The meter ids an event affects in a fleet of ``meters`` (the emulator's ground truth)."""
    numbers = feeder_meters(int(event.feeder_id.removeprefix("FEEDER_")), 1, meters, feeders)
    return {f"{event.tenant_id}-MTR-{n:05d}" for n in numbers[members(seed, event, numbers)]}


async def test_quickcheck_summarises_the_latest_intervals(
    client: TestClient[Any, Any], pool: AsyncConnectionPool[Any]
) -> None:
    tenant = "QC_" + uuid.uuid4().hex[:8]
    sag = Event(
        event_id=9_001,
        tenant_id=tenant,
        event_type=EventType.VOLTAGE_SAG,
        feeder_id="FEEDER_2",
        starts_at=DAY,
        ends_at=DAY + timedelta(days=1),
        fraction=1.0,
        params={"depthPct": 12.0},
    )
    await ingest(pool, tenant, 500, DAY, 6, events=(sag,))
    body = await (await client.get(f"/api/ami/kpi/quickcheck?tenantId={tenant}")).json()
    assert body["ok"] is True and body["latestReadAt"] == "2026-03-05T01:30:00Z"
    assert len(body["intervals"]) == 4
    assert [row["completeness"] for row in body["completeness"]] == [1.0] * 4
    assert len(body["feederLoad"]) == 10 and body["feederLoad"][0]["metersReporting"] == 20
    voltage = body["voltageAnomalies"]
    assert voltage["feeders"][0]["feederId"] == "FEEDER_2"
    assert voltage["readsOutsideRangeA"] >= 20  # the sagged feeder's every meter
    assert body["theftSuspects"]["day"] == "2026-03-04"  # the latest complete day


async def test_quickcheck_of_an_unknown_tenant_is_empty_not_an_error(
    client: TestClient[Any, Any],
) -> None:
    body = await (await client.get("/api/ami/kpi/quickcheck?tenantId=NOBODY_HERE")).json()
    assert body["ok"] is True and body["intervals"] == [] and body["latestReadAt"] is None


async def test_theft_detection_finds_every_pattern(
    pool: AsyncConnectionPool[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # A fixed tenant (the database is this run's own) fixes the seed, so which meters
    # steal, and the scores, are the same on every run; a random one made the
    # per-pattern recall on 4-12 thieves fail now and then on a single miss.
    tenant = "SCORE"
    meters = 2_000
    window = (DAY, DAY + timedelta(days=1))  # the reads ending in (DAY, DAY + 1 day]
    thefts = tuple(
        Event(
            event_id=8_000 + n,
            tenant_id=tenant,
            event_type=EventType.THEFT,
            feeder_id=f"FEEDER_{3 * n}",
            starts_at=window[0],
            ends_at=window[1],
            fraction=0.1,
            params={"pattern": f"h{n}"},
        )
        for n in range(1, 7)
    )
    short_window = dataclasses.replace(
        thefts[1],
        event_id=8_007,
        feeder_id="FEEDER_21",
        params={"pattern": "h2", "windowHours": 0.5},
    )
    vacancy = dataclasses.replace(
        thefts[0], event_id=8_008, event_type=EventType.VACANCY, feeder_id="FEEDER_22", params={}
    )
    await ingest(
        pool,
        tenant,
        meters,
        DAY - timedelta(days=3),
        4 * 96,
        events=(*thefts, short_window, vacancy),
    )
    refreshed = await refresh_stale_days(pool)
    assert {day for tenant_id, day in refreshed if tenant_id == tenant} == {
        DAY - timedelta(days=n) for n in range(4)
    }
    async with pool.connection() as conn:
        cursor = await conn.execute(query("theft_suspects"), {"tenant_id": tenant, "day": DAY})
        flagged = {(row[1], row[0]) for row in await cursor.fetchall()}
    seed = text_seed(tenant)
    lines, scores, all_hits, all_thieves = [], {}, 0, 0
    for event in thefts:
        truth = truth_of(seed, event, meters)
        found = {meter for feeder_id, meter in flagged if feeder_id == event.feeder_id}
        hits = len(truth & found)
        precision = hits / len(found) if found else 0.0
        recall = hits / len(truth)
        scores[event.params["pattern"]] = (precision, recall)
        all_hits, all_thieves = all_hits + hits, all_thieves + len(truth)
        lines.append(
            f"{event.params['pattern']}: {len(truth)} thieves, {len(found)} flagged, "
            f"precision {precision:.2f}, recall {recall:.2f}"
        )
    elsewhere = {
        meter
        for feeder_id, meter in flagged
        if feeder_id not in {event.feeder_id for event in (*thefts, short_window)}
    }
    honest_meters = meters - sum(
        len(feeder_meters(feeder, 1, meters, FEEDERS)) for feeder in (3, 6, 9, 12, 15, 18, 21)
    )
    lines.append(
        f"false alarms on the {FEEDERS - 7} feeders without theft: {len(elsewhere)} of "
        f"{honest_meters} meters"
    )
    async with pool.connection() as conn:
        cursor = await conn.execute(query("near_zero"), {"tenant_id": tenant, "day": DAY})
        near_zero = {row[0] for row in await cursor.fetchall()}
    seed_truth = {
        event.event_id: truth_of(seed, event, meters) for event in (short_window, vacancy)
    }
    found_short = {meter for feeder_id, meter in flagged if feeder_id == "FEEDER_21"}
    lines.append(
        f"h2 over half an hour: {len(seed_truth[8_007])} thieves, {len(found_short)} flagged; "
        f"vacancy: {len(seed_truth[8_008])} homes, {len(near_zero)} near-zero meters"
    )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert found_short == seed_truth[8_007]  # 2 zero reads: half an hour of nothing
    assert near_zero == seed_truth[8_008]  # vacancy is its own KPI, and never theft
    for pattern, (precision, recall) in scores.items():
        assert recall >= 0.9, f"{pattern}: recall {recall:.2f}"
        assert precision >= 0.8, f"{pattern}: precision {precision:.2f}"
    assert all_hits >= 0.95 * all_thieves, "overall recall under 0.95"
    assert len(elsewhere) <= 0.01 * honest_meters
    assert np.isfinite(len(flagged))


async def test_a_lasting_theft_is_measured_from_before_it_began(
    pool: AsyncConnectionPool[Any], database_url: str
) -> None:
    """A 7-day trailing baseline was all theft by a theft's eighth day, and it was no longer
    found. The baseline (0010) moves only with clean days: after 10 days of theft the
    thieves are still measured against their last honest week, and flagged every day.

    In a session whose time zone changes its clocks within the theft (days are UTC days).
    """
    tenant = "LASTING"  # fixed: which meters steal, and so the counts, are the same each run
    first_day = datetime(2026, 3, 26, tzinfo=UTC)  # Europe's clocks changed on 29 March
    theft = Event(
        event_id=9_001,
        tenant_id=tenant,
        event_type=EventType.THEFT,
        feeder_id="FEEDER_4",
        starts_at=first_day + timedelta(days=3),
        ends_at=first_day + timedelta(days=12),
        fraction=0.3,
        params={"pattern": "h1", "alpha": 0.6},
    )
    await ingest(pool, tenant, 200, first_day, 12 * 96, events=(theft,), feeders=10)
    berlin = AsyncConnectionPool(  # sessions whose time zone moves its clocks on 29 March
        database_url,
        min_size=1,
        max_size=1,
        kwargs={"options": "-c TimeZone=Europe/Berlin"},
        open=False,
    )
    async with berlin:
        await refresh_stale_days(berlin)
    thieves = truth_of(text_seed(tenant), theft, 200, feeders=10)
    assert len(thieves) >= 3
    async with pool.connection() as conn:
        cursor = await conn.execute(
            b"SELECT min(reads), max(reads) FROM kpi_meter_days WHERE tenant_id = %s", [tenant]
        )
        assert await cursor.fetchone() == (96, 96)  # 29 March too: a UTC day is 24 hours
        for day in (first_day + timedelta(days=n) for n in range(12)):
            params = {"tenant_id": tenant, "day": day}
            suspects = await (await conn.execute(query("theft_suspects"), params)).fetchall()
            flagged = {row[0] for row in suspects}
            assert flagged == (thieves if day >= theft.starts_at else set()), day
        cursor = await conn.execute(
            b"SELECT meter_id, baseline_days FROM kpi_meter_days WHERE tenant_id = %s AND day = %s",
            [tenant, theft.ends_at - timedelta(days=1)],
        )
        baseline_days = dict(await cursor.fetchall())
    assert {baseline_days[meter] for meter in thieves} == {3}  # its 3 honest days
    honest = sorted(days for meter, days in baseline_days.items() if meter not in thieves)
    assert honest[0] >= 8 and honest[len(honest) // 2] == 11  # they learn from most days


async def test_a_failed_refresh_pass_is_logged_and_the_next_one_runs(
    pool: AsyncConnectionPool[Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The background loop survives any error (once it died silently on one it did not
    expect), logs it, and the next pass brings the features up to date."""
    tenant = "BROKEN_" + uuid.uuid4().hex[:8]
    await ingest(pool, tenant, 50, DAY, 4, interval_minutes=60)
    passes: list[str] = []
    two_ran = asyncio.Event()

    async def breaks_once(pool: AsyncConnectionPool[Any]) -> list[tuple[str, datetime]]:
        if not passes:
            passes.append("broken")
            raise RuntimeError("a pass that breaks")
        passes.append("ran")
        try:
            return await refresh_stale_days(pool)
        finally:
            if passes.count("ran") >= 2:
                two_ran.set()

    monkeypatch.setattr(kpi_refresh, "refresh_stale_days", breaks_once)
    monkeypatch.setattr(kpi_refresh, "REFRESH_EVERY_S", 0.05)
    app = web.Application()
    app.cleanup_ctx.append(kpi_refresh.background_refresh(lambda app: pool))
    runner = web.AppRunner(app)
    await runner.setup()  # starts the loop
    try:
        await asyncio.wait_for(two_ran.wait(), timeout=30)
    finally:
        await runner.cleanup()
    failures = [r for r in caplog.records if getattr(r, "action", "") == "kpi_refresh_failed"]
    assert len(failures) == 1 and "a pass that breaks" in failures[0].getMessage() + str(
        getattr(failures[0], "error", "")
    )
    async with pool.connection() as conn:
        cursor = await conn.execute(
            b"SELECT count(*) FROM kpi_meter_days WHERE tenant_id = %s", [tenant]
        )
        assert await cursor.fetchone() == (50,)


async def test_features_are_refreshed_for_days_that_changed_and_the_days_after(
    pool: AsyncConnectionPool[Any],
) -> None:
    """A day's verdict starts from the baseline of the days before it, so reads arriving
    late for one day refresh that day and every later one; nothing else is redone."""
    tenant = "FRESH_" + uuid.uuid4().hex[:8]
    await ingest(pool, tenant, 100, DAY, 8, interval_minutes=60)
    await ingest(pool, tenant, 100, DAY + timedelta(days=1), 2, interval_minutes=60)
    assert {(tenant, DAY), (tenant, DAY + timedelta(days=1))} <= set(await refresh_stale_days(pool))
    assert all(tenant_id != tenant for tenant_id, _ in await refresh_stale_days(pool))
    await ingest(pool, tenant, 100, DAY + timedelta(hours=8), 2, interval_minutes=60)
    refreshed = [day for tenant_id, day in await refresh_stale_days(pool) if tenant_id == tenant]
    assert refreshed == [DAY, DAY + timedelta(days=1)]  # two more reads on the first day
    async with pool.connection() as conn:
        cursor = await conn.execute(
            b"SELECT count(*), min(reads), max(reads) FROM kpi_meter_days"
            b" WHERE tenant_id = %s AND day = %s",
            [tenant, DAY],
        )
        assert await cursor.fetchone() == (100, 10, 10)
        cursor = await conn.execute(  # days long over keep no hour rows between passes
            b"SELECT to_regclass(kpi_hours_partition(%s)), count(*) FROM kpi_refreshed_hours"
            b" WHERE tenant_id = %s",
            [DAY, tenant],
        )
        assert await cursor.fetchone() == (None, 0)


async def test_a_meter_day_with_too_few_reads_is_insufficient_data_never_a_suspect(
    pool: AsyncConnectionPool[Any],
) -> None:
    """Honest meters that lost reads are judged on the reads they have, or not at all.

    On the judged day, half of FEEDER_3's meters lose the evening peak (4 h: 83% of their
    reads remain) and are judged on the hours they have, none as a suspect; half of
    FEEDER_5's lose 10 h (58% remain) and are reported as insufficient data.
    """
    tenant = "OUTAGE"  # fixed, as the scored test: which meters are out and the verdicts
    peak = Event(
        event_id=9_101,
        tenant_id=tenant,
        event_type=EventType.COMMS_OUTAGE,
        feeder_id="FEEDER_3",
        starts_at=DAY + timedelta(hours=16),
        ends_at=DAY + timedelta(hours=20),
        fraction=0.5,
    )
    long = dataclasses.replace(
        peak,
        event_id=9_102,
        feeder_id="FEEDER_5",
        starts_at=DAY + timedelta(hours=8),
        ends_at=DAY + timedelta(hours=18),
    )
    await ingest(pool, tenant, 500, DAY - timedelta(days=3), 4 * 96, events=(peak, long))
    await refresh_stale_days(pool)
    params = {"tenant_id": tenant, "day": DAY}
    async with pool.connection() as conn:
        suspects = await (await conn.execute(query("theft_suspects"), params)).fetchall()
        unjudged = await (await conn.execute(query("insufficient_data"), params)).fetchall()
    seed = text_seed(tenant)
    lost = {}
    for event in (peak, long):
        numbers = feeder_meters(int(event.feeder_id.removeprefix("FEEDER_")), 1, 500, FEEDERS)
        lost[event.feeder_id] = {
            f"{tenant}-MTR-{n:05d}" for n in numbers[members(seed, event, numbers)]
        }
    assert len(lost["FEEDER_3"]) >= 5 and len(lost["FEEDER_5"]) >= 5
    flagged = {row[0] for row in suspects}
    assert flagged & (lost["FEEDER_3"] | lost["FEEDER_5"]) == set()
    assert {row[0] for row in unjudged} == lost["FEEDER_5"]  # FEEDER_3's 83% are judged
    assert {round(row[3], 3) for row in unjudged} == {round(56 / 96, 3)}


async def test_a_meter_that_changed_feeder_within_a_day_does_not_stop_the_refresh(
    pool: AsyncConnectionPool[Any],
) -> None:
    """The fleet's feeder count can change between publishes (meter i moves feeder); a
    day's features keep one row per meter, and the pass over every tenant goes on."""
    tenant = "MOVED_" + uuid.uuid4().hex[:8]
    await ingest(pool, tenant, 50, DAY, 48)  # 25 feeders
    for step in range(49, 97):  # the rest of the day on 10 feeders
        read_at = DAY + timedelta(minutes=15 * step)
        for feeder in range(1, 11):
            batch = generate_batch(
                publish_id="moved",
                tenant_id=tenant,
                feeder=feeder,
                meter_numbers=feeder_meters(feeder, 1, 50, 10),
                read_at=read_at,
                interval_minutes=15,
                events=(),
            )
            await insert_batch(pool, batch)
    refreshed = await refresh_stale_days(pool)
    assert (tenant, DAY) in refreshed
    async with pool.connection() as conn:
        count = await (
            await conn.execute(
                b"SELECT count(*), count(DISTINCT meter_id) FROM kpi_meter_day_features"
                b" WHERE tenant_id = %s AND day = %s",
                [tenant, DAY],
            )
        ).fetchone()
    assert count == (50, 50)


async def test_two_meters_of_one_key_are_judged_with_the_next_seed(
    pool: AsyncConnectionPool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day's hour rows reach their meters by a seeded hash of the meter id; when two
    meters share a key, the day is read again with the next seed and judged as usual."""
    tenant = "KEYS_" + uuid.uuid4().hex[:8]
    await ingest(pool, tenant, 50, DAY, 96, feeders=10)
    calls: list[np.ndarray] = []
    real = kpi_judge.key_places

    def colliding_once(meter_keys: np.ndarray, hour_keys: np.ndarray) -> np.ndarray | None:
        """Every day's first keys collide (a day of another test's tenant's too)."""
        calls.append(meter_keys)
        return None if len(calls) % 2 else real(meter_keys, hour_keys)

    monkeypatch.setattr(kpi_judge, "key_places", colliding_once)
    await refresh_until_current(pool, tenant)
    assert len(calls) >= 2 and not np.array_equal(calls[0], calls[1])  # another seed's keys
    features = await features_of(pool, tenant)
    assert len(features) == 50
    assert {row[1] for row in features.values()} == {96}  # every read of the day added up


async def features_of(pool: AsyncConnectionPool[Any], tenant: str) -> dict[tuple[Any, ...], Any]:
    """Every stored feature and verdict of the tenant's meter-days, by (day, meter)."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            b"SELECT day, meter_id, feeder_id, reads, interval_minutes, kwh_per_read,"
            b" zero_reads, variation, peer_corr, exported, hour_metered, hour_peer,"
            b" hour_sunlit, hour_kwh, baseline, baseline_days, own_ratio, own_corr, own_error,"
            b" peer_ratio, peer_rank, near_zero, reasons, generator"
            b" FROM kpi_meter_day_features WHERE tenant_id = %s",
            [tenant],
        )
        return {row[:2]: row[2:] for row in await cursor.fetchall()}


async def hours_of(pool: AsyncConnectionPool[Any], tenant: str) -> dict[tuple[Any, ...], Any]:
    """Every hour row of the tenant, by (day, hour, meter, feeder)."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            b"SELECT day, hour, meter_id, feeder_id, reads, interval_minutes, kwh, kwh_squares,"
            b" peer_kwh, peer_squares, kwh_peer, zero_reads, exported, sunlit"
            b" FROM kpi_meter_hours WHERE tenant_id = %s",
            [tenant],
        )
        return {row[:4]: row[4:] for row in await cursor.fetchall()}


def assert_close(got: Any, expected: Any) -> None:
    if isinstance(expected, float) and got is not None:
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    elif isinstance(expected, list) and got is not None:
        assert len(got) == len(expected)
        for one, other in zip(got, expected, strict=True):
            assert_close(one, other)
    else:
        assert got == expected


async def test_features_kept_hour_by_hour_equal_the_whole_day_computed_at_once(
    pool: AsyncConnectionPool[Any],
) -> None:
    """Passes after every few intervals (one hour's rows recomputed each time), a late
    batch for an hour long done and a meter that moved feeder leave the same features and
    verdicts as one pass over whole days, and the statistics the reads give. Yesterday
    (over: added up and judged, its hour rows still kept) and today (in progress: its
    hour rows, and no features until it is over)."""
    tenant = "HOURLY_" + uuid.uuid4().hex[:8]
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday -= timedelta(days=1)
    held_back = yesterday + timedelta(hours=3, minutes=15)
    for step in range(1, 2 * 96 + 1):
        read_at = yesterday + timedelta(minutes=15 * step)
        feeders = 4 if step < 150 else 3  # meter i moves feeder late on the second day
        for feeder in range(1, feeders + 1):
            if read_at == held_back and feeder == 2:
                continue
            batch = generate_batch(
                publish_id="hourly",
                tenant_id=tenant,
                feeder=feeder,
                meter_numbers=feeder_meters(feeder, 1, 40, feeders),
                read_at=read_at,
                interval_minutes=15,
                events=(),
            )
            await insert_batch(pool, batch)
        if step % 7 == 0:
            await refresh_until_current(pool, tenant)
    late = generate_batch(
        publish_id="hourly",
        tenant_id=tenant,
        feeder=2,
        meter_numbers=feeder_meters(2, 1, 40, 4),
        read_at=held_back,
        interval_minutes=15,
        events=(),
    )
    await insert_batch(pool, late)
    await refresh_until_current(pool, tenant)
    kept = await features_of(pool, tenant)
    kept_hours = await hours_of(pool, tenant)
    assert {day for day, _, _, _ in kept_hours} == {yesterday, yesterday + timedelta(days=1)}
    assert {hour for _, hour, _, _ in kept_hours} == set(range(24))

    async with pool.connection() as conn:  # forget every hour: one pass over whole days
        await conn.set_autocommit(True)
        await conn.execute(query("refresh_lock_wait"))  # no pass of an app halfway meanwhile
        try:
            async with conn.transaction():
                for table in ("kpi_refreshed_days", "kpi_refreshed_hours", "kpi_meter_hours"):
                    await conn.execute(
                        sql.SQL("DELETE FROM {} WHERE tenant_id = %s").format(
                            sql.Identifier(table)
                        ),
                        [tenant],
                    )
        finally:
            await conn.execute(query("refresh_unlock"))
            await conn.set_autocommit(False)
    await refresh_until_current(pool, tenant)
    at_once = await features_of(pool, tenant)
    assert kept.keys() == at_once.keys() and len(kept) == 40
    for key, row in at_once.items():
        assert_close(list(kept[key]), list(row))
    at_once_hours = await hours_of(pool, tenant)
    assert kept_hours.keys() == at_once_hours.keys()
    for key, row in at_once_hours.items():
        assert_close(list(kept_hours[key]), list(row))

    async with pool.connection() as conn:  # the statistics, straight from the reads
        cursor = await conn.execute(
            b"WITH peers AS (SELECT feeder_id, read_at, avg(kwh) AS peer FROM meter_reads_electric"
            b"  WHERE tenant_id = %(t)s GROUP BY 1, 2)"
            b" SELECT date_trunc('day', read_at - interval '1 microsecond', 'UTC'), meter_id,"
            b" count(*)::integer, avg(kwh), stddev_pop(kwh) / avg(kwh), corr(kwh, peer)"
            b" FROM meter_reads_electric JOIN peers USING (feeder_id, read_at)"
            b" WHERE tenant_id = %(t)s GROUP BY 1, 2",
            {"t": tenant},
        )
        direct = [row for row in await cursor.fetchall() if row[0] == yesterday]
    assert len(direct) == len(kept)
    for day, meter, reads, kwh_per_read, variation, peer_corr in direct:
        assert_close(list(kept[(day, meter)][1:2]), [reads])
        stored = kept[(day, meter)]
        assert stored[3] == pytest.approx(kwh_per_read, rel=1e-12)
        assert stored[5] == pytest.approx(variation, rel=1e-9)
        assert stored[6] == pytest.approx(peer_corr, rel=1e-9)
    for row in kept.values():
        assert len(row[8]) == 24 and None not in row[8]  # hour_metered: every hour has reads
        assert row[11] is not None  # hour_kwh: made by the verdict


async def test_a_meter_without_reads_the_day_before_starts_from_the_day_before_that(
    pool: AsyncConnectionPool[Any],
) -> None:
    """A meter silent for a whole day: its next day's baseline is carried out of the day
    before the silence (the lookup past the day before), the others' out of the day before."""
    tenant = "GAP_" + uuid.uuid4().hex[:8]
    first = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first -= timedelta(days=3)
    for step in range(1, 3 * 96 + 1):
        read_at = first + timedelta(minutes=15 * step)
        silent = 96 < step <= 2 * 96  # the second day: meter 2 sends nothing
        batch = generate_batch(
            publish_id="gap",
            tenant_id=tenant,
            feeder=1,
            meter_numbers=np.array([1, 3, 4] if silent else [1, 2, 3, 4]),
            read_at=read_at,
            interval_minutes=15,
            events=(),
        )
        await insert_batch(pool, batch)
    await refresh_until_current(pool, tenant)
    async with pool.connection() as conn:
        cursor = await conn.execute(
            b"SELECT meter_id, day, baseline_days, baseline IS NOT NULL"
            b" FROM kpi_meter_day_features WHERE tenant_id = %s",
            [tenant],
        )
        days = {(meter[-1], day): figures for meter, day, *figures in await cursor.fetchall()}
    last = first + timedelta(days=2)
    assert ("2", first + timedelta(days=1)) not in days
    assert days[("2", first)] == [0, False]  # a first day: nothing to start from
    assert days[("2", last)] == [1, True]  # carried out of the first day
    assert days[("1", last)] == [2, True]  # out of the second, which had the first's


async def ingest_except(
    pool: AsyncConnectionPool[Any], tenant: str, day: datetime, steps: range, held: set[int]
) -> None:
    """40 meters at 15 minutes, the steps' intervals from the day: on 4 feeders, then from
    the second day's 15:00 on 3 (meters move feeder); feeder 2's batch of each step in
    ``held`` left out (to come late)."""
    for step in steps:
        feeders = 4 if step < 96 + 60 else 3
        for feeder in range(1, feeders + 1):
            if step in held and feeder == 2:
                continue
            batch = generate_batch(
                publish_id="ahead",
                tenant_id=tenant,
                feeder=feeder,
                meter_numbers=feeder_meters(feeder, 1, 40, feeders),
                read_at=day + timedelta(minutes=15 * step),
                interval_minutes=15,
                events=(),
            )
            await insert_batch(pool, batch)


async def test_hours_0_to_22_are_added_up_once_the_day_has_its_reads_of_23_00(
    pool: AsyncConnectionPool[Any],
) -> None:
    """A day in progress: nothing is added up ahead before its reads of 23:00 (hour 22's
    last interval); then hours 0-22 are, per meter, as the hour rows hold them."""
    tenant = "AHEAD_" + uuid.uuid4().hex[:8]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if datetime.now(UTC) > today + timedelta(hours=23, minutes=58):
        pytest.skip("today would be over before the test is")
    ahead = b"SELECT count(*), sum(reads), sum(kwh) FROM kpi_meter_day_ahead WHERE tenant_id = %s"
    await ingest_except(pool, tenant, today, range(1, 92), set())  # to 22:45
    await refresh_until_current(pool, tenant)
    async with pool.connection() as conn:
        assert await (await conn.execute(ahead, [tenant])).fetchone() == (0, None, None)
    await ingest_except(pool, tenant, today, range(92, 93), set())  # 23:00, hour 22's end
    await refresh_until_current(pool, tenant)
    async with pool.connection() as conn:
        count, reads, kwh = await (await conn.execute(ahead, [tenant])).fetchone()
        cursor = await conn.execute(
            b"SELECT sum(kwh) FROM kpi_meter_hours WHERE tenant_id = %s AND hour <= 22", [tenant]
        )
        hours_kwh = (await cursor.fetchone())[0]
    assert (count, reads) == (40, 92 * 40)
    assert kwh == pytest.approx(hours_kwh, rel=1e-12)


async def test_a_day_added_up_ahead_is_judged_as_at_its_close_while_it_holds_its_hours(
    pool: AsyncConnectionPool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The close of a day whose hours 0-22 were added up ahead (the pass during its last
    hour) takes them from there, and leaves the features and verdicts of a close that added
    up every hour: with meters that moved feeder, one that reported only in the last hour
    and one only before it. Sums ahead that no longer hold hours 0-22 (a late read, stored
    by a process that did not forget them) are not used; a late read forgets them."""
    tenant = "CLOSE_" + uuid.uuid4().hex[:8]
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday -= timedelta(days=1)  # its hour rows are kept: a day over for a day keeps them
    day = yesterday - timedelta(days=1)
    await ingest_except(pool, tenant, day, range(1, 2 * 96 + 1), held={96 + 14, 96 + 30})
    for meter, step in ((41, 2 * 96), (42, 96 + 40)):  # only at 24:00, only at 10:00
        batch = generate_batch(
            publish_id="ahead",
            tenant_id=tenant,
            feeder=1,
            meter_numbers=np.array([meter]),
            read_at=day + timedelta(minutes=15 * step),
            interval_minutes=15,
            events=(),
        )
        await insert_batch(pool, batch)
    await refresh_until_current(pool, tenant)
    at_close = await features_of(pool, tenant)
    assert len(at_close) == 40 + 42
    params = {"tenant_id": tenant, "day": yesterday}

    async def judge_again(added_up_ahead: bool, marked: bool = False) -> dict[tuple[Any, ...], Any]:
        """The day's last hour, features and verdict forgotten (hours 0-22 added up ahead
        first, as during that hour; or meter 1's zero reads raised by 1,000 in them), then a
        pass."""
        async with pool.connection() as conn:
            await conn.set_autocommit(True)
            await conn.execute(query("refresh_lock_wait"))  # no pass of an app halfway
            try:
                async with conn.transaction():
                    if added_up_ahead:
                        added = await conn.execute(query("add_up_day_ahead"), params)
                        assert added.rowcount > 42  # a row per meter and feeder
                    if marked:
                        await conn.execute(
                            b"UPDATE kpi_meter_day_ahead SET zero_reads = zero_reads + 1000"
                            b" WHERE tenant_id = %s AND meter_id LIKE '%%-00001'",
                            [tenant],
                        )
                    for forget in (
                        b"DELETE FROM kpi_refreshed_hours WHERE tenant_id = %(tenant_id)s"
                        b" AND day = %(day)s AND hour = 23",
                        b"DELETE FROM kpi_meter_day_features WHERE tenant_id = %(tenant_id)s"
                        b" AND day = %(day)s",
                        b"UPDATE kpi_refreshed_days SET judged = false"
                        b" WHERE tenant_id = %(tenant_id)s AND day = %(day)s",
                    ):
                        await conn.execute(forget, params)
            finally:
                await conn.execute(query("refresh_unlock"))
                await conn.set_autocommit(False)
        await refresh_until_current(pool, tenant)
        return await features_of(pool, tenant)

    def zero_reads(features: dict[tuple[Any, ...], Any]) -> int:
        return int(features[(yesterday, f"{tenant}-MTR-00001")][4])

    def assert_same(got: dict[tuple[Any, ...], Any], expected: dict[tuple[Any, ...], Any]) -> None:
        assert got.keys() == expected.keys()
        for key, row in expected.items():
            assert_close(list(got[key]), list(row))

    assert_same(await judge_again(added_up_ahead=True), at_close)
    marked = await judge_again(added_up_ahead=False, marked=True)  # taken from the sums ahead
    assert zero_reads(marked) == zero_reads(at_close) + 1000

    async def late(step: int) -> dict[tuple[Any, ...], Any]:
        await ingest_except(pool, tenant, day, range(step, step + 1), held=set())
        await refresh_until_current(pool, tenant)
        return await features_of(pool, tenant)

    ahead_rows = b"SELECT count(*) FROM kpi_meter_day_ahead WHERE tenant_id = %s"
    with monkeypatch.context() as release_before:  # hour 3 recomputed, the sums kept
        release_before.setattr(
            kpi_refresh,
            "query",
            lambda name: b"SELECT" if name == "forget_day_ahead" else query(name),
        )
        stale = await late(96 + 14)
    async with pool.connection() as conn:
        assert (await (await conn.execute(ahead_rows, [tenant])).fetchone())[0] > 42
    assert zero_reads(stale) == zero_reads(at_close)  # the sums ahead were not used
    readings = {row[1] for key, row in stale.items() if key[0] == yesterday}
    assert readings == {96, 95, 1}  # feeder 2's meters have hour 3 now, not 07:30 yet

    forgotten = await late(96 + 30)  # 07:30
    async with pool.connection() as conn:
        assert await (await conn.execute(ahead_rows, [tenant])).fetchone() == (0,)
    readings = {row[1] for key, row in forgotten.items() if key[0] == yesterday}
    assert readings == {96, 1}  # every read of the day, meters 41 and 42 one each
    assert_same(forgotten, await judge_again(added_up_ahead=False))
