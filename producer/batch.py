"""One job's reads: the meters of one feeder at one interval, events applied."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime

import numpy as np

from gridlens.entry import ReadBatch
from producer.diversity import NO_PV_OR_EV, FleetMix, net_metered
from producer.events import Event, EventType, HonestAt, apply_theft, members, vacant_kwh
from producer.fleet import epoch_minutes, feeder_id
from producer.model import honest_kwh, honest_voltage, load_ratio, meter_traits
from producer.randomness import FloatArray, text_seed

KWH_DECIMALS = 4  # 0.1 Wh, finer than a meter's register
VOLTAGE_DECIMALS = 1


def generate_batch(
    *,
    publish_id: str,
    tenant_id: str,
    feeder: int,
    meter_numbers: np.ndarray,
    read_at: datetime,
    interval_minutes: int,
    events: Iterable[Event] = (),
    mix: FleetMix = NO_PV_OR_EV,
    late: bool = False,
) -> ReadBatch:
    """The reads of ``meter_numbers`` (all on ``feeder``) for the interval ending at read_at:
    delivered and received kWh, with the ``mix``'s share of meters having rooftop PV and EV
    charging (none by default).

    Meters in a comms outage have no read: the batch may hold fewer meters than
    asked, or none. Theft falsifies delivered kWh; received kWh is left as measured.
    """
    seed = text_seed(tenant_id)
    feeder_name = feeder_id(feeder)
    minutes = epoch_minutes(read_at)
    meters = np.asarray(meter_numbers, dtype=np.int64)
    ratio = load_ratio(meter_traits(seed, meters), minutes, interval_minutes)
    load = honest_kwh(seed, meters, minutes, interval_minutes, ratio)
    kwh, received = net_metered(seed, meters, feeder, minutes, interval_minutes, load, mix)
    voltage = honest_voltage(seed, meters, feeder, minutes, ratio)
    reporting = np.ones(len(meters), dtype=bool)
    for event in sorted(events, key=lambda event: event.event_id):
        if not event.applies(feeder_name, read_at):
            continue
        affected = members(seed, event, meters)
        if not affected.any():
            continue
        if event.event_type is EventType.THEFT:
            honest = (seed, event, meters[affected], minutes, interval_minutes, kwh[affected])
            kwh[affected] = apply_theft(*honest, _delivered_at(seed, feeder, interval_minutes, mix))
        elif event.event_type is EventType.VACANCY:
            kwh[affected] = vacant_kwh(seed, meters[affected], minutes, interval_minutes)
        elif event.event_type is EventType.VOLTAGE_SAG:
            voltage[affected] *= 1.0 - float(event.params["depthPct"]) / 100.0
        else:
            reporting &= ~affected
    return ReadBatch(
        publish_id=publish_id,
        tenant_id=tenant_id,
        feeder_id=feeder_name,
        read_at=read_at,
        interval_minutes=interval_minutes,
        meter_numbers=meters[reporting],
        kwh=np.round(kwh[reporting], KWH_DECIMALS),
        voltage=np.round(voltage[reporting], VOLTAGE_DECIMALS),
        kwh_received=np.round(received[reporting], KWH_DECIMALS),
        late=late,
    )


def _delivered_at(seed: int, feeder: int, interval_minutes: int, mix: FleetMix) -> HonestAt:
    """Honest delivered kWh at other read times, for the theft patterns that need the day's."""

    def delivered(meters: np.ndarray, minutes: np.ndarray) -> FloatArray:
        return _delivered(
            seed,
            feeder,
            interval_minutes,
            mix,
            np.ascontiguousarray(meters, dtype=np.int64).tobytes(),
            np.shape(meters),
            np.ascontiguousarray(minutes, dtype=np.int64).tobytes(),
            np.shape(minutes),
        )

    return delivered


@functools.lru_cache(maxsize=64)
def _delivered(
    seed: int,
    feeder: int,
    interval_minutes: int,
    mix: FleetMix,
    meter_bytes: bytes,
    meter_shape: tuple[int, ...],
    minute_bytes: bytes,
    minute_shape: tuple[int, ...],
) -> FloatArray:
    """Kept: h4 and h5 ask for the same day's reads at each of its intervals."""
    meters = np.frombuffer(meter_bytes, dtype=np.int64).reshape(meter_shape)
    minutes = np.frombuffer(minute_bytes, dtype=np.int64).reshape(minute_shape)
    load = honest_kwh(seed, meters, minutes, interval_minutes)
    result = net_metered(seed, meters, feeder, minutes, interval_minutes, load, mix)[0]
    result.flags.writeable = False  # shared by the cache
    return result
