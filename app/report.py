"""Fleet statistics without publishing: what an analyst should expect of the data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from producer.diversity import NO_PV_OR_EV, FleetMix, has_ev, has_pv, net_metered
from producer.fleet import epoch_minutes, feeder_of
from producer.model import MINUTES_PER_DAY, honest_kwh, honest_voltage, load_ratio, meter_traits
from producer.randomness import text_seed

RANGE_A = (114.0, 126.0)  # ANSI C84.1 service voltage at 120 V nominal
RANGE_B = (110.0, 127.0)
VOLTAGE_PERCENTILES = (0.1, 1.0, 50.0, 99.0, 99.9)


@dataclass(frozen=True)
class GroupStats:
    """One kind of meter: how many, what it draws and exports a day, its evening."""

    name: str
    meters: int
    delivered: float  # mean daily kWh delivered
    received: float  # mean daily kWh received (exported)
    evening_kw: float  # mean kW delivered 18:00-24:00 (UTC, the fleet's clock)


@dataclass(frozen=True)
class FleetStats:
    tenant_id: str
    meters: int
    feeders: int
    days: int
    start: date
    interval_minutes: int
    daily_kwh_mean: float
    daily_kwh_std: float
    daily_kwh_p10: float
    daily_kwh_p90: float  # delivered kWh, all meters
    hourly_kwh: tuple[float, ...]  # mean kWh per meter in each UTC hour of the day
    voltage_percentiles: tuple[float, ...]
    voltage_min: float
    voltage_max: float
    share_range_a: float
    share_range_b: float
    pv_meters: int = 0
    ev_meters: int = 0
    non_pv_daily_kwh_mean: float = float("nan")  # delivered, meters without PV
    pv_daily_kwh_received_mean: float = 0.0  # received, meters with PV
    groups: tuple[GroupStats, ...] = ()  # neither, PV only, EV only, both

    @property
    def peak_to_trough(self) -> float:
        return max(self.hourly_kwh) / self.hourly_kwh[3]


def fleet_stats(
    tenant_id: str,
    meters: int,
    feeders: int,
    days: int,
    *,
    start: date,
    interval_minutes: int = 15,
    mix: FleetMix = NO_PV_OR_EV,
) -> FleetStats:
    """Event-free statistics of meters 1..``meters`` over ``days`` days from ``start``, with
    the ``mix``'s shares of meters having rooftop PV and EV charging (none by default)."""
    seed = text_seed(tenant_id)
    numbers = np.arange(1, meters + 1, dtype=np.int64)[:, None]
    feeder_numbers = feeder_of(numbers, feeders)
    traits = meter_traits(seed, numbers)
    per_day = MINUTES_PER_DAY // interval_minutes
    daily = np.empty((meters, days))
    daily_received = np.empty((meters, days))
    evening = np.zeros(meters)  # kWh delivered 18:00-24:00, summed over the days
    hourly = np.zeros(24)
    voltages = np.empty((meters, days * per_day), dtype=np.float32)
    for day in range(days):
        midnight = epoch_minutes(
            datetime.combine(start + timedelta(days=day), datetime.min.time(), UTC)
        )
        minutes = midnight + interval_minutes * np.arange(1, per_day + 1)[None, :]
        ratio = load_ratio(traits, minutes, interval_minutes)
        load = honest_kwh(seed, numbers, minutes, interval_minutes, ratio)
        kwh, received = net_metered(
            seed, numbers, feeder_numbers, minutes, interval_minutes, load, mix
        )
        daily[:, day] = kwh.sum(axis=1)
        daily_received[:, day] = received.sum(axis=1)
        evening += kwh[:, per_day * 18 // 24 :].sum(axis=1)
        hourly += kwh.mean(axis=0).reshape(24, -1).sum(axis=1)
        columns = slice(day * per_day, (day + 1) * per_day)
        voltages[:, columns] = honest_voltage(seed, numbers, feeder_numbers, minutes, ratio)
    pv = has_pv(seed, numbers[:, 0], mix)
    ev = has_ev(seed, numbers[:, 0], mix)
    return FleetStats(
        tenant_id=tenant_id,
        meters=meters,
        feeders=feeders,
        days=days,
        start=start,
        interval_minutes=interval_minutes,
        **_energy(daily, daily_received, pv),
        hourly_kwh=tuple(float(value) for value in hourly / days),
        pv_meters=int(pv.sum()),
        ev_meters=int(ev.sum()),
        **_voltage(voltages.ravel()),
        groups=_groups(daily, daily_received, evening / (6.0 * days), pv, ev),
    )


def _groups(
    daily: np.ndarray, received: np.ndarray, evening_kw: np.ndarray, pv: np.ndarray, ev: np.ndarray
) -> tuple[GroupStats, ...]:
    kinds = (("neither", ~pv & ~ev), ("PV", pv & ~ev), ("EV", ~pv & ev), ("PV and EV", pv & ev))
    return tuple(
        GroupStats(
            name,
            int(chosen.sum()),
            float(daily[chosen].mean()),
            float(received[chosen].mean()),
            float(evening_kw[chosen].mean()),
        )
        for name, chosen in kinds
        if chosen.any()
    )


def _energy(daily: np.ndarray, received: np.ndarray, pv: np.ndarray) -> dict[str, Any]:
    """Daily energy per meter: delivered (all meters, and those without PV), received."""
    return {
        "daily_kwh_mean": float(daily.mean()),
        "daily_kwh_std": float(daily.std()),
        "daily_kwh_p10": float(np.percentile(daily, 10)),
        "daily_kwh_p90": float(np.percentile(daily, 90)),
        "non_pv_daily_kwh_mean": float(daily[~pv].mean()) if (~pv).any() else float("nan"),
        "pv_daily_kwh_received_mean": float(received[pv].mean()) if pv.any() else 0.0,
    }


def _voltage(flat: np.ndarray) -> dict[str, Any]:
    return {
        "voltage_percentiles": tuple(float(v) for v in np.percentile(flat, VOLTAGE_PERCENTILES)),
        "voltage_min": float(flat.min()),
        "voltage_max": float(flat.max()),
        "share_range_a": float(((flat >= RANGE_A[0]) & (flat <= RANGE_A[1])).mean()),
        "share_range_b": float(((flat >= RANGE_B[0]) & (flat <= RANGE_B[1])).mean()),
    }


def format_report(stats: FleetStats) -> str:
    lines = [
        f"fleet {stats.tenant_id}: {stats.meters:,} meters on {stats.feeders} feeders, "
        f"{stats.days} days from {stats.start.isoformat()}, {stats.interval_minutes}-minute reads"
        " (no events)",
        f"{stats.pv_meters:,} meters with rooftop PV, {stats.ev_meters:,} with EV charging",
        "",
        "daily energy per meter        kWh",
        f"  mean                   {stats.daily_kwh_mean:8.2f}   (EIA 2020 US average: 29.36)",
        f"  standard deviation     {stats.daily_kwh_std:8.2f}",
        f"  10th / 90th percentile {stats.daily_kwh_p10:8.2f} / {stats.daily_kwh_p90:.2f}",
        *_mix_lines(stats),
        "",
        "average hour (UTC)   kWh per meter",
    ]
    peak = max(stats.hourly_kwh)
    for hour, kwh in enumerate(stats.hourly_kwh):
        bar = "#" * round(30 * kwh / peak)
        lines.append(f"  {hour:02d}:00   {kwh:7.3f}  {bar}")
    lines.append(f"  evening peak / 03:00 trough: {stats.peak_to_trough:.2f}x")
    lines += ["", "voltage                        V"]
    for percentile, volts in zip(VOLTAGE_PERCENTILES, stats.voltage_percentiles, strict=True):
        lines.append(f"  p{percentile:<5g}                {volts:8.1f}")
    lines += [
        f"  min / max             {stats.voltage_min:8.1f} / {stats.voltage_max:.1f}",
        f"  inside ANSI Range A (114–126 V): {100 * stats.share_range_a:.3f}%",
        f"  inside ANSI Range B (110–127 V): {100 * stats.share_range_b:.3f}%",
    ]
    return "\n".join(lines)


def _mix_lines(stats: FleetStats) -> list[str]:
    """Each kind of meter against its anchors (docs/emulator.md gives the sources)."""
    if not stats.pv_meters and not stats.ev_meters:
        return []
    share = 100.0 / stats.meters
    lines = [
        f"  mean, meters without PV {stats.non_pv_daily_kwh_mean:8.2f}   (EIA: 29.4, within 5%)",
        "",
        f"meters with rooftop PV  {share * stats.pv_meters:5.1f}%   (default 4%: EIA RECS, 3.7%)",
        f"meters with EV charging {share * stats.ev_meters:5.1f}%   (default 2%: IEA/RECS, ~1.5%)",
        "",
        "per kind of meter   meters   kWh/day delivered   received   evening kW (18-24 h)",
    ]
    for group in stats.groups:
        lines.append(
            f"  {group.name:15s} {group.meters:8,d}   {group.delivered:17.2f}"
            f"   {group.received:8.2f}   {group.evening_kw:8.2f}"
        )
    lines.append(
        "  anchors: PV exports at midday (received > 0); a charger adds ~6.5 kWh a day"
        " (RECS 2020: 2,363 kWh a year), most of it in the evening"
    )
    return lines
