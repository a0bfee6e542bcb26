"""The emulator: deterministic reads, events that change only what they should,
theft patterns that follow their formulas, and realistic fleet statistics."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from app.report import fleet_stats
from gridlens.entry import ReadBatch, encode
from gridlens.settings import DEFAULT_EV_SHARE, DEFAULT_PV_SHARE
from producer.batch import generate_batch
from producer.diversity import FleetMix
from producer.events import Event, EventType, members
from producer.fleet import feeder_meters
from producer.model import MEAN_DAILY_KWH
from producer.randomness import text_seed

TENANT = "DEMO_TENANT"
FEEDERS = 25
READ_AT = datetime(2026, 3, 4, 18, 15, tzinfo=UTC)  # a Wednesday evening
WINDOW = (datetime(2026, 3, 4, 12, tzinfo=UTC), datetime(2026, 3, 5, 12, tzinfo=UTC))


def batch(
    feeder: int = 3,
    read_at: datetime = READ_AT,
    events: tuple[Event, ...] = (),
    interval: int = 15,
    meters: int = 25_000,
) -> ReadBatch:
    return generate_batch(
        publish_id="p1",
        tenant_id=TENANT,
        feeder=feeder,
        meter_numbers=feeder_meters(feeder, 1, meters, FEEDERS)[:500],
        read_at=read_at,
        interval_minutes=interval,
        events=events,
    )


def event(event_type: EventType, feeder: int = 3, fraction: float = 0.3, **params: Any) -> Event:
    return Event(
        event_id=41,
        tenant_id=TENANT,
        event_type=event_type,
        feeder_id=f"FEEDER_{feeder}",
        starts_at=WINDOW[0],
        ends_at=WINDOW[1],
        fraction=fraction,
        params=params,
    )


def as_dict(reads: ReadBatch) -> dict[int, tuple[float, float]]:
    return {
        int(m): (float(k), float(v))
        for m, k, v in zip(reads.meter_numbers, reads.kwh, reads.voltage, strict=True)
    }


def affected(ev: Event, reads: ReadBatch) -> set[int]:
    meters = np.asarray(reads.meter_numbers)
    return set(meters[members(text_seed(TENANT), ev, meters)].tolist())


# ---------------------------------------------------------------- determinism


def test_the_same_inputs_give_byte_identical_entries() -> None:
    theft = event(EventType.THEFT, pattern="h4")
    assert encode(batch(events=(theft,))) == encode(batch(events=(theft,)))


def test_entries_are_identical_in_another_process() -> None:
    code = (
        "import sys, hashlib; from tests.test_emulator import batch; from gridlens.entry import "
        "encode; sys.stdout.write(hashlib.sha256(encode(batch())).hexdigest())"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout
    import hashlib

    assert other == hashlib.sha256(encode(batch())).hexdigest()


def test_different_intervals_and_tenants_differ() -> None:
    assert as_dict(batch()) != as_dict(batch(read_at=READ_AT + timedelta(minutes=15)))
    other = generate_batch(
        publish_id="p1",
        tenant_id="OTHER",
        feeder=3,
        meter_numbers=feeder_meters(3, 1, 25_000, FEEDERS)[:500],
        read_at=READ_AT,
        interval_minutes=15,
    )
    assert as_dict(batch()) != as_dict(other)


def test_a_meter_reads_the_same_whatever_batch_it_is_in() -> None:
    whole = as_dict(batch())
    meters = feeder_meters(3, 1, 25_000, FEEDERS)[100:150]
    part = generate_batch(
        publish_id="p1",
        tenant_id=TENANT,
        feeder=3,
        meter_numbers=meters,
        read_at=READ_AT,
        interval_minutes=15,
    )
    assert as_dict(part) == {m: whole[m] for m in meters.tolist()}


def test_reads_are_never_negative_and_rounded() -> None:
    reads = batch()
    kwh = np.asarray(reads.kwh)
    assert (kwh >= 0).all()
    assert np.allclose(kwh, np.round(kwh, 4)) and np.allclose(
        reads.voltage, np.round(reads.voltage, 1)
    )


# ---------------------------------------------------------------- events: scope


@pytest.mark.parametrize(
    "ev",
    [
        event(EventType.THEFT, pattern="h1"),
        event(EventType.VOLTAGE_SAG, depthPct=10.0),
        event(EventType.COMMS_OUTAGE),
    ],
    ids=["theft", "voltage-sag", "comms-outage"],
)
def test_an_event_changes_only_its_feeder_its_window_and_its_meters(ev: Event) -> None:
    honest = as_dict(batch())
    # Another feeder, and its own feeder before and after the window: untouched.
    assert as_dict(batch(feeder=4, events=(ev,))) == as_dict(batch(feeder=4))
    # Reads end their interval: the window's intervals are the reads ending in (start, end].
    before, after = WINDOW[0], WINDOW[1] + timedelta(minutes=15)
    assert as_dict(batch(read_at=before, events=(ev,))) == as_dict(batch(read_at=before))
    assert as_dict(batch(read_at=after, events=(ev,))) == as_dict(batch(read_at=after))
    # Inside: exactly its members change (or vanish).
    changed = as_dict(batch(events=(ev,)))
    members_ = affected(ev, batch())
    assert 0.2 < len(members_) / 500 < 0.4  # fraction 0.3
    unchanged = {m for m in honest if m in changed and changed[m] == honest[m]}
    assert unchanged == set(honest) - members_


def test_a_comms_outage_removes_exactly_the_affected_rows() -> None:
    outage = event(EventType.COMMS_OUTAGE, fraction=0.1)
    reads = batch(events=(outage,))
    assert set(as_dict(reads)) == set(as_dict(batch())) - affected(outage, batch())
    assert len(reads) < 500


def test_a_total_outage_leaves_an_empty_batch() -> None:
    assert len(batch(events=(event(EventType.COMMS_OUTAGE, fraction=1.0),))) == 0


def test_a_voltage_sag_depresses_voltage_by_its_depth() -> None:
    sag = event(EventType.VOLTAGE_SAG, fraction=1.0, depthPct=10.0)
    honest, sagged = as_dict(batch()), as_dict(batch(events=(sag,)))
    for meter, (kwh, volts) in sagged.items():
        assert kwh == honest[meter][0]
        assert volts == pytest.approx(honest[meter][1] * 0.9, abs=0.1)  # both rounded
    assert max(volts for _, volts in sagged.values()) < 114.0  # below ANSI Range A


# ---------------------------------------------------------------- theft patterns h1–h6


def theft_pairs(
    pattern: str, read_at: datetime = READ_AT, **params: Any
) -> list[tuple[float, float, int]]:
    """(falsified, honest, meter) for every member of a fraction-1 theft."""
    theft = event(EventType.THEFT, fraction=1.0, pattern=pattern, **params)
    honest = as_dict(batch(read_at=read_at))
    falsified = as_dict(batch(read_at=read_at, events=(theft,)))
    return [(falsified[m][0], honest[m][0], m) for m in honest]


def day_reads(meter_limit: int = 500) -> dict[int, list[float]]:
    """Honest kWh of every 15-minute interval of READ_AT's UTC day, per meter."""
    day = datetime(2026, 3, 4, tzinfo=UTC)
    series: dict[int, list[float]] = {}
    for step in range(1, 97):
        for meter, (kwh, _) in as_dict(batch(read_at=day + timedelta(minutes=15 * step))).items():
            series.setdefault(meter, []).append(kwh)
    return series


def test_h1_scales_every_read_by_a_fixed_alpha() -> None:
    for falsified, honest, _ in theft_pairs("h1", alpha=0.3):
        assert falsified == pytest.approx(0.3 * honest, abs=1e-4)
    ratios: dict[int, list[float]] = {}
    for offset in (0, 15, 30):
        for falsified, honest, meter in theft_pairs("h1", READ_AT + timedelta(minutes=offset)):
            if honest > 0.01:
                ratios.setdefault(meter, []).append(falsified / honest)
    for values in ratios.values():
        assert 0.1 - 1e-3 <= values[0] <= 0.8 + 1e-3
        assert max(values) - min(values) < 0.02  # fixed per meter, over time


def test_h2_reads_zero_inside_the_daily_window_and_honest_outside() -> None:
    inside = theft_pairs("h2", windowStartHour=17.0, windowHours=3.0)  # read 18:00–18:15
    assert all(falsified == 0.0 for falsified, _, _ in inside)
    outside = theft_pairs("h2", windowStartHour=20.0, windowHours=6.0)
    assert all(falsified == honest for falsified, honest, _ in outside)


def test_h3_scales_each_interval_by_its_own_gamma() -> None:
    ratios = [f / h for f, h, _ in theft_pairs("h3") if h > 0.01]
    assert all(0.1 - 1e-3 <= ratio <= 0.8 + 1e-3 for ratio in ratios)
    assert np.std(ratios) > 0.1  # drawn per interval and meter, not fixed


def test_h4_is_gamma_times_the_days_mean_and_h5_the_days_mean() -> None:
    means = {meter: float(np.mean(values)) for meter, values in day_reads().items()}
    h5 = theft_pairs("h5")
    for falsified, _, meter in h5:
        assert falsified == pytest.approx(means[meter], abs=2e-4)
    for falsified, _, meter in theft_pairs("h4"):
        assert 0.1 * means[meter] - 2e-4 <= falsified <= 0.8 * means[meter] + 2e-4


def test_h6_reads_the_mirrored_time_of_day() -> None:
    # 18:00–18:15 is interval 72 of 0..95; its mirror is interval 23, 05:45–06:00.
    mirrored = as_dict(batch(read_at=datetime(2026, 3, 4, 6, 0, tzinfo=UTC)))
    for falsified, _, meter in theft_pairs("h6"):
        assert falsified == mirrored[meter][0]


# ---------------------------------------------------------------- realism


@pytest.fixture(scope="module")
def week() -> Any:
    return fleet_stats(TENANT, 10_000, FEEDERS, 7, start=date(2026, 3, 2))


def test_fleet_mean_daily_energy_is_near_the_us_average(week: Any) -> None:
    assert 25.0 <= week.daily_kwh_mean <= 33.0


def test_meters_without_pv_keep_the_us_average_with_the_default_mix() -> None:
    """EIA 2020: 29.4 kWh a day; the default shares of PV and EV meters leave the meters
    without PV within 5% of it (EV charging adds its 6.5 kWh a day to 2% of them)."""
    mix = FleetMix(pv_share=DEFAULT_PV_SHARE, ev_share=DEFAULT_EV_SHARE)
    stats = fleet_stats(TENANT, 10_000, FEEDERS, 7, start=date(2026, 3, 2), mix=mix)
    assert abs(stats.non_pv_daily_kwh_mean / MEAN_DAILY_KWH - 1) < 0.05
    assert 0.03 < stats.pv_meters / 10_000 < 0.05 and 0.01 < stats.ev_meters / 10_000 < 0.03
    assert stats.pv_daily_kwh_received_mean > 5.0  # March: PV homes export at midday
    assert stats.daily_kwh_mean < stats.non_pv_daily_kwh_mean  # net metering lowers delivered


def test_evening_peak_is_at_least_twice_the_night_trough(week: Any) -> None:
    hourly = week.hourly_kwh
    assert max(hourly[16:22]) >= 2.0 * hourly[3]
    assert hourly.index(max(hourly)) in range(17, 21)  # the evening, not the morning


def test_event_free_voltages_sit_in_ansi_range_a(week: Any) -> None:
    assert week.share_range_a >= 0.99
    assert week.voltage_min >= 105.0 and week.voltage_max <= 130.0
    assert 118.0 <= week.voltage_percentiles[2] <= 124.0  # the median


def test_weekends_differ_from_weekdays() -> None:
    saturday = as_dict(batch(read_at=datetime(2026, 3, 7, 7, 15, tzinfo=UTC)))
    wednesday = as_dict(batch(read_at=datetime(2026, 3, 4, 7, 15, tzinfo=UTC)))
    assert np.mean([k for k, _ in saturday.values()]) < 0.9 * np.mean(
        [k for k, _ in wednesday.values()]
    )
