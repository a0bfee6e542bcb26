"""Rooftop PV and EV charging (producer/diversity.py): who has them, what they do to the
reads, and that every figure is deterministic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from gridlens.entry import ReadBatch, encode
from producer.batch import generate_batch
from producer.diversity import (
    CLEAR_DAY_SHARE,
    EV_CHARGER_KW,
    FleetMix,
    has_ev,
    has_pv,
    net_metered,
    site_traits,
)
from producer.events import Event, EventType
from producer.fleet import epoch_minutes, feeder_meters
from producer.model import honest_kwh
from producer.randomness import Stream, fields, hashes, text_seed

TENANT = "DEMO_TENANT"
SEED = text_seed(TENANT)
FEEDERS = 25
ALL_PV = FleetMix(pv_share=1.0)
ALL_EV = FleetMix(ev_share=1.0)
JUNE_DAY = datetime(2026, 6, 15, tzinfo=UTC)


def reads(
    read_at: datetime, mix: FleetMix, feeder: int = 3, events: tuple[Event, ...] = ()
) -> ReadBatch:
    return generate_batch(
        publish_id="p1",
        tenant_id=TENANT,
        feeder=feeder,
        meter_numbers=feeder_meters(feeder, 1, 12_500, FEEDERS),
        read_at=read_at,
        interval_minutes=15,
        events=events,
        mix=mix,
    )


def clear_feeders(day: datetime) -> list[int]:
    """The feeders whose sky is clear on ``day`` (a day's sky is drawn per feeder)."""
    feeders = np.arange(1, FEEDERS + 1)
    kind, _ = fields(hashes(SEED, Stream.SKY_DAY, feeders, epoch_minutes(day) // 1_440), 2)
    return [int(feeder) for feeder in feeders[kind < CLEAR_DAY_SHARE]]


def test_shares_pick_a_stable_growing_set_of_meters_independently() -> None:
    meters = np.arange(1, 20_001, dtype=np.int64)
    pv_small = has_pv(SEED, meters, FleetMix(pv_share=0.04))
    pv_large = has_pv(SEED, meters, FleetMix(pv_share=0.2))
    assert 0.035 < pv_small.mean() < 0.045 and 0.19 < pv_large.mean() < 0.21
    assert (pv_large | ~pv_small).all()  # raising the share only adds meters
    ev = has_ev(SEED, meters, FleetMix(ev_share=0.2))
    assert abs((pv_large & ev).mean() - 0.2 * 0.2) < 0.01  # independent draws
    assert (has_pv(SEED, meters, FleetMix(pv_share=0.2)) == pv_large).all()
    assert (site_traits(SEED, meters).pv_draw < 0.2).tolist() == pv_large.tolist()


def test_pv_meters_export_at_midday_on_clear_days() -> None:
    noon = JUNE_DAY + timedelta(hours=12, minutes=15)
    clear = clear_feeders(JUNE_DAY)
    assert clear, "some feeder has a clear day"
    for feeder in clear[:3]:
        batch = reads(noon, ALL_PV, feeder)
        received = batch.received()
        assert (received > 0).mean() > 0.9  # a 7 kW array beats a household's midday load
        assert received.mean() > 0.5  # kWh in 15 minutes: over 2 kW exported on average
    night = reads(JUNE_DAY + timedelta(hours=1), ALL_PV, clear[0])
    assert not night.received().any()
    assert list(night.kwh) == list(reads(JUNE_DAY + timedelta(hours=1), FleetMix(), clear[0]).kwh)


def test_a_meter_never_both_imports_and_exports_in_one_interval() -> None:
    mix = FleetMix(pv_share=1.0, ev_share=0.5)
    for hour in range(0, 24):
        batch = reads(JUNE_DAY + timedelta(hours=hour, minutes=45), mix)
        delivered, received = np.asarray(batch.kwh), batch.received()
        assert not ((delivered > 0) & (received > 0)).any(), hour
        assert (delivered >= 0).all() and (received >= 0).all()


def test_net_metering_nets_generation_against_load() -> None:
    meters = feeder_meters(3, 1, 12_500, FEEDERS)
    minutes = epoch_minutes(JUNE_DAY + timedelta(hours=12))
    load = honest_kwh(SEED, meters, minutes, 15)
    delivered, received = net_metered(SEED, meters, 3, minutes, 15, load, ALL_PV)
    generated = load - delivered + received  # what the arrays made
    assert (generated > 0).all()
    assert np.allclose(delivered - received, load - generated)


def test_pv_meters_follow_the_sky_of_their_feeder_day() -> None:
    """Cloudy days generate less; a feeder's day is the same for all its meters."""
    meters = np.arange(1, 2_001, dtype=np.int64)[:, None]
    feeders = (meters - 1) % FEEDERS + 1
    start = epoch_minutes(JUNE_DAY)
    minutes = start + 15 * np.arange(1, 97)[None, :]
    load = honest_kwh(SEED, meters, minutes, 15)
    _, received = net_metered(SEED, meters, feeders, minutes, 15, load, ALL_PV)
    exported = received.sum(axis=1)
    by_feeder = [exported[(feeders == f)[:, 0]].mean() for f in range(1, FEEDERS + 1)]
    assert max(by_feeder) > 2.0 * min(by_feeder)  # clear and cloudy days differ


def test_yearly_pv_yield_is_that_of_us_rooftops() -> None:
    """NREL PVWatts: about 1,100–1,600 kWh a year per kW DC across the contiguous US."""
    meters = np.arange(1, 1_001, dtype=np.int64)[:, None]
    feeders = (meters - 1) % FEEDERS + 1
    traits = site_traits(SEED, meters)
    zero_load = np.zeros((1_000, 96))
    yearly = np.zeros(1_000)
    for day in range(0, 364, 7):
        minutes = epoch_minutes(datetime(2026, 1, 1, tzinfo=UTC)) + day * 1_440
        times = minutes + 15 * np.arange(1, 97)[None, :]
        _, received = net_metered(SEED, meters, feeders, times, 15, zero_load, ALL_PV)
        yearly += received.sum(axis=1) * 7
    per_kw = yearly / traits.pv_kw
    assert 1_050 < per_kw.mean() < 1_600
    assert 6.5 < float(np.median(traits.pv_kw)) < 7.5  # LBNL Tracking the Sun


def test_ev_charging_adds_evening_and_night_load_at_level_2_power() -> None:
    meters = np.arange(1, 1_001, dtype=np.int64)[:, None]
    start = epoch_minutes(datetime(2026, 3, 2, tzinfo=UTC))
    minutes = start + 15 * np.arange(1, 96 * 28 + 1)[None, :]  # four weeks
    load = honest_kwh(SEED, meters, minutes, 15)
    delivered, received = net_metered(SEED, meters, 0, minutes, 15, load, ALL_EV)
    added = delivered - load
    assert not received.any()
    assert added.max() <= EV_CHARGER_KW / 4 + 1e-9  # 7.2 kW for a whole 15 minutes at most
    assert (added >= 0).all()
    daily = added.sum(axis=1) / 28
    assert 5.0 < daily.mean() < 8.0  # EIA RECS 2020: 6.5 kWh a day in homes with an EV
    hours = ((minutes[0] - 7.5) % 1_440) / 60
    by_hour = [added[:, (hours >= h) & (hours < h + 1)].sum() for h in range(24)]
    evening_and_night = sum(by_hour[15:24]) + sum(by_hour[0:3])
    assert evening_and_night == pytest.approx(sum(by_hour))  # never by day
    assert max(range(24), key=by_hour.__getitem__) in range(17, 21)


def test_the_same_mix_gives_byte_identical_entries_and_none_changes_nothing() -> None:
    mix = FleetMix(pv_share=0.3, ev_share=0.2)
    noon = JUNE_DAY + timedelta(hours=12)
    assert encode(reads(noon, mix)) == encode(reads(noon, mix))
    plain = reads(noon, FleetMix())
    assert not plain.received().any()
    mixed = reads(noon, mix)
    meters = np.asarray(mixed.meter_numbers)
    seed_pv = has_pv(SEED, meters, mix)
    seed_ev = has_ev(SEED, meters, mix)
    neither = ~seed_pv & ~seed_ev
    assert (np.asarray(mixed.kwh)[neither] == np.asarray(plain.kwh)[neither]).all()
    assert (np.asarray(mixed.kwh)[seed_pv] != np.asarray(plain.kwh)[seed_pv]).any()


def test_theft_falsifies_delivered_kwh_and_leaves_received_alone() -> None:
    theft = Event(
        event_id=7,
        tenant_id=TENANT,
        event_type=EventType.THEFT,
        feeder_id="FEEDER_3",
        starts_at=JUNE_DAY,
        ends_at=JUNE_DAY + timedelta(days=1),
        fraction=1.0,
        params={"pattern": "h5"},
    )
    read_at = JUNE_DAY + timedelta(hours=20)
    honest = reads(read_at, ALL_PV)
    stolen = reads(read_at, ALL_PV, events=(theft,))
    assert list(stolen.received()) == list(honest.received())
    # h5 reads the day's mean of what the meter honestly registers: delivered, after PV.
    day = [reads(JUNE_DAY + timedelta(minutes=15 * n), ALL_PV) for n in range(1, 97)]
    means = np.mean([np.asarray(batch.kwh) for batch in day], axis=0)
    assert np.allclose(stolen.kwh, means, atol=2e-4)


def test_the_fleet_report_shows_each_kind_of_meter_against_its_anchors() -> None:
    from datetime import date

    from app.report import fleet_stats, format_report
    from producer.diversity import FleetMix

    mix = FleetMix(pv_share=0.08, ev_share=0.05)
    stats = fleet_stats("REPORT", 2_000, 25, 7, start=date(2026, 6, 1), mix=mix)
    none = fleet_stats("REPORT", 2_000, 25, 7, start=date(2026, 6, 1), mix=FleetMix(0.08, 0))
    groups = {group.name: group for group in stats.groups}
    assert set(groups) == {"neither", "PV", "EV", "PV and EV"}
    assert sum(group.meters for group in stats.groups) == 2_000
    assert 0.06 < stats.pv_meters / 2_000 < 0.10 and 0.035 < stats.ev_meters / 2_000 < 0.065
    assert groups["neither"].received == 0 and groups["PV"].received > 5  # June: exports
    assert groups["EV"].evening_kw > groups["neither"].evening_kw
    added = (stats.daily_kwh_mean - none.daily_kwh_mean) * 2_000 / stats.ev_meters
    assert 5.0 < added < 8.0  # a charger's day, against RECS 2020's 2,363 kWh a year
    report = format_report(stats)
    assert "per kind of meter" in report and "PV and EV" in report
