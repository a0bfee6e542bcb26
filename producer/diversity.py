"""Rooftop PV (net metered) and EV charging: the meters that do not read the plain load.

A meter has rooftop PV when a hash of (tenant, meter) falls below the publish's PV share, and
an EV charger when another, independent hash falls below the EV share: raising a share adds
meters and never takes one away. A meter with neither reads the load of producer/model.py,
unchanged. Pure and vectorised like the model: meters and epoch minutes broadcast together,
and every draw is a hash of what it is about (producer/randomness.py).

PV: an array of ``pv_kw`` kW DC (lognormal around the US residential median of LBNL's
"Tracking the Sun"), facing south, west or east in the shares that report gives, whose
orientation scales its yield and moves its daily peak. Its clear-sky output follows the sun
of the fleet's clock (solar noon at 12:00 UTC, day length by season, about 40° N) and is
dimmed by the feeder's sky: each feeder-day is clear, partly cloudy or cloudy (NOAA's
climatology), shared by the feeder's meters, and varies from interval to interval.

EV: a Level-2 charger (7.2 kW) on some evenings or nights; on a meter's session days a session
of 8–12 kWh starts on arrival home or at the off-peak hour of a timer.

Net metering, per interval: delivered = max(load − generation, 0), received =
max(generation − load, 0), the EV's charging counting as load. docs/emulator.md has the
figures and their sources.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from producer.model import DAYS_PER_YEAR, MINUTES_PER_DAY
from producer.randomness import FloatArray, Stream, hashes, lognormal_noise, normal, uniform
from producer.randomness import fields as hash_fields

# PV systems (LBNL, Tracking the Sun, 2021 edition: residential median 6.5 kW DC in 2020,
# most states above 7.5 kW; 54% face south, 24% west, most of the rest east).
PV_MEDIAN_KW: Final = 7.0
PV_SIZE_SIGMA: Final = 0.35  # log-scale spread: 10th–90th percentile about 4.5–11 kW
PV_KW_RANGE: Final = (2.0, 20.0)
SOUTH_SHARE: Final = 0.54
WEST_SHARE: Final = 0.24  # the rest face east
FACING_AZIMUTH: Final = (180.0, 260.0, 100.0)  # south, west, east: centre of each, degrees
AZIMUTH_SPREAD_DEG: Final = 25.0  # ± around the centre
TILT_RANGE_DEG: Final = (10.0, 35.0)
EAST_WEST_LOSS: Final = 0.17  # yield lost facing due east or west (NREL PVWatts: 15–20%)
PEAK_SHIFT_H: Final = 1.5  # the daily peak moves this much facing due west (later) or east
# The sun of the fleet's clock: solar noon 12:00, day length 12 h ± 2.9 h (about 40° N).
SOLAR_NOON_H: Final = 12.0
DAY_LENGTH_SWING_H: Final = 2.9
EQUINOX_DAY: Final = 79.0  # day of the year of the March equinox (0 = 1 January)
CLEAR_PEAK_KW_PER_KW: Final = 0.80  # AC kW per kW DC at a clear noon, equinox
CLEAR_PEAK_SEASONAL: Final = 0.12  # ± with the season (higher sun in summer)
SHAPE_POWER: Final = 1.2  # the clear-sky day: sin(π·position)^power
# The sky of a feeder-day (NOAA Comparative Climatic Data: typical US stations have about
# 100 clear, 110 partly cloudy and 155 cloudy days a year): the share of each, the clear-sky
# output it lets through (low, low + span) and how much that varies from interval to interval.
CLEAR_DAY_SHARE: Final = 0.28
PARTLY_DAY_SHARE: Final = 0.30  # the rest are cloudy
SKY_LEVELS: Final = {"clear": (0.90, 0.10), "partly": (0.55, 0.35), "cloudy": (0.15, 0.40)}
SKY_SIGMA: Final = {"clear": 0.03, "partly": 0.35, "cloudy": 0.20}
PV_NOISE_SIGMA: Final = 0.05  # per meter and interval: soiling, shade, inverter
# EV charging (EIA RECS 2020: homes with an EV used 2,363 kWh a year charging it, 6.5 kWh a
# day; INL, "Plugged In" (EV Project, 2015): home charging starts on arrival in the evening,
# or at midnight on a timer where time-of-use rates reward it).
EV_CHARGER_KW: Final = 7.2  # Level 2: 240 V, 30 A
EV_SESSION_KWH: Final = (8.0, 12.0)  # energy of a session day
EV_FREQUENCY: Final = (0.45, 0.85)  # share of days with a session, per meter (mean 0.65)
EV_TIMER_SHARE: Final = 0.3  # meters whose charger waits for the off-peak hour
EV_TIMER_START_H: Final = 23.0  # a timer starts within the hour after this
EV_ARRIVAL_H: Final = (17.0, 19.5)  # a meter's usual arrival home
EV_ARRIVAL_SPREAD_H: Final = 1.5  # ± from day to day
EV_EARLIEST_H: Final = 15.0
EV_DAY_START_MIN: Final = 12 * 60  # a charging day runs from noon to noon: sessions never do
EV_IDLE_HOURS: Final = (2.5, 14.5)  # interval midpoints at which no session can run


@dataclass(frozen=True)
class FleetMix:
    """The shares of a fleet's meters with rooftop PV and with an EV charger, each in [0, 1]."""

    pv_share: float = 0.0
    ev_share: float = 0.0


NO_PV_OR_EV: Final = FleetMix()  # the plain load model for every meter


@dataclass(frozen=True)
class SiteTraits:
    """What is constant about each meter's site, drawn once (arrays shaped like the meters)."""

    pv_draw: FloatArray  # the meter has PV when this is below the PV share
    ev_draw: FloatArray  # ... and an EV charger when this is below the EV share
    pv_kw: FloatArray  # array size, kW DC
    orientation: FloatArray  # yield relative to facing due south
    peak_shift_h: FloatArray  # hours after solar noon of the array's daily peak
    ev_timer: np.ndarray  # True: sessions start at the off-peak hour, not on arrival
    ev_frequency: FloatArray  # share of days with a session
    ev_arrival_h: FloatArray  # usual arrival home, hour of the day

    @property
    def pv_rating_kw(self) -> FloatArray:
        """kW DC as the orientation lets the array use it."""
        rating: FloatArray = self.pv_kw * self.orientation
        return rating


def site_traits(seed: int, meters: np.ndarray) -> SiteTraits:
    """The site traits of ``meters`` (one per row), from a small cache of recent batches."""
    flat = np.ascontiguousarray(meters, dtype=np.int64).reshape(len(meters), -1)[:, 0]
    return _site_traits(seed, np.ascontiguousarray(flat).tobytes())


@functools.lru_cache(maxsize=1024)
def _site_traits(seed: int, meter_bytes: bytes) -> SiteTraits:
    meters = np.frombuffer(meter_bytes, dtype=np.int64)
    facing, spread, tilt_draw = hash_fields(hashes(seed, Stream.PV_ORIENTATION, meters), 3)
    south, west, east = FACING_AZIMUTH
    centre = np.where(
        facing < SOUTH_SHARE, south, np.where(facing < SOUTH_SHARE + WEST_SHARE, west, east)
    )
    off_south = (centre + AZIMUTH_SPREAD_DEG * (2.0 * spread - 1.0) - 180.0) / 90.0
    tilt = TILT_RANGE_DEG[0] + (TILT_RANGE_DEG[1] - TILT_RANGE_DEG[0]) * tilt_draw
    size = np.exp(np.log(PV_MEDIAN_KW) + PV_SIZE_SIGMA * normal(seed, Stream.PV_SIZE, meters))
    timer, frequency, arrival = hash_fields(hashes(seed, Stream.EV_HABIT, meters), 3)
    return SiteTraits(
        pv_draw=uniform(seed, Stream.PV_MEMBER, meters),
        ev_draw=uniform(seed, Stream.EV_MEMBER, meters),
        pv_kw=np.clip(size, *PV_KW_RANGE),
        # A flatter array than 30° catches less of the low sun, at mid-latitudes a little.
        orientation=(1.0 - EAST_WEST_LOSS * off_south**2)
        * (1.0 - 0.1 * ((tilt - 30.0) / 30.0) ** 2),
        peak_shift_h=PEAK_SHIFT_H * off_south,
        ev_timer=timer < EV_TIMER_SHARE,
        ev_frequency=EV_FREQUENCY[0] + (EV_FREQUENCY[1] - EV_FREQUENCY[0]) * frequency,
        ev_arrival_h=EV_ARRIVAL_H[0] + (EV_ARRIVAL_H[1] - EV_ARRIVAL_H[0]) * arrival,
    )


def has_pv(seed: int, meters: np.ndarray, mix: FleetMix) -> np.ndarray:
    """Which of ``meters`` have rooftop PV (the draw of SiteTraits.pv_draw, not cached)."""
    result: np.ndarray = uniform(seed, Stream.PV_MEMBER, meters) < mix.pv_share
    return result


def has_ev(seed: int, meters: np.ndarray, mix: FleetMix) -> np.ndarray:
    """Which of ``meters`` have an EV charger (SiteTraits.ev_draw, not cached)."""
    result: np.ndarray = uniform(seed, Stream.EV_MEMBER, meters) < mix.ev_share
    return result


def _sun(
    minutes: np.ndarray | int, interval_minutes: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Day number, season (−1 at the December solstice, 1 at the June one) and the position
    of the interval's middle between sunrise (0) and sunset (1)."""
    middle = np.asarray(minutes) - interval_minutes / 2.0
    day = middle // MINUTES_PER_DAY
    season = np.sin(2.0 * np.pi * (day % DAYS_PER_YEAR - EQUINOX_DAY) / DAYS_PER_YEAR)
    day_length = 12.0 + DAY_LENGTH_SWING_H * season
    hours = (middle % MINUTES_PER_DAY) / 60.0
    return day, season, (hours - SOLAR_NOON_H) / day_length + 0.5


def _rows(values: np.ndarray, selected: np.ndarray, ndim: int) -> np.ndarray:
    """The values of the selected meters, shaped like ``meters[selected]``."""
    chosen: np.ndarray = values[selected]
    return chosen if ndim == 1 else chosen.reshape((-1,) + (1,) * (ndim - 1))


def sky_clearness(
    seed: int, feeders: np.ndarray | int, day: FloatArray, minutes: np.ndarray | int
) -> FloatArray:
    """The share of clear-sky output reaching the feeder's arrays: the feeder-day's sky
    (clear, partly cloudy or cloudy), varied per interval, the same for all its meters."""
    if np.ndim(feeders) == 0 and np.ndim(day) == 0 and np.ndim(minutes) == 0:
        # One feeder at one time, as each job of it asks: kept for the feeder's next job.
        return _feeder_sky(seed, int(feeders), int(day), int(minutes))
    return _sky(seed, feeders, day, minutes)


@functools.lru_cache(maxsize=256)
def _feeder_sky(seed: int, feeder: int, day: int, minutes: int) -> FloatArray:
    return _sky(seed, feeder, float(day), minutes)


def _sky(
    seed: int, feeders: np.ndarray | int, day: FloatArray | float, minutes: np.ndarray | int
) -> FloatArray:
    kind, level = hash_fields(hashes(seed, Stream.SKY_DAY, feeders, day), 2)
    clear = kind < CLEAR_DAY_SHARE
    cloudy = kind >= CLEAR_DAY_SHARE + PARTLY_DAY_SHARE

    def pick(values: dict[str, float]) -> FloatArray:
        chosen: FloatArray = np.where(
            clear, values["clear"], np.where(cloudy, values["cloudy"], values["partly"])
        )
        return chosen

    low = pick({name: low for name, (low, _) in SKY_LEVELS.items()})
    span = pick({name: span for name, (_, span) in SKY_LEVELS.items()})
    sigma = pick(SKY_SIGMA)
    draw = normal(seed, Stream.SKY_INTERVAL, feeders, minutes)
    result: FloatArray = np.clip(
        (low + span * level) * np.exp(sigma * draw - sigma**2 / 2), 0.0, 1.1
    )
    return result


def pv_kwh(
    seed: int,
    meters: np.ndarray,
    feeders: np.ndarray | int,
    minutes: np.ndarray | int,
    interval_minutes: int,
    rating_kw: np.ndarray,
    peak_shift_h: np.ndarray,
) -> FloatArray:
    """kWh generated by the arrays of ``meters`` in each interval, given their traits
    (SiteTraits.pv_rating_kw, .peak_shift_h, shaped like the meters)."""
    day, season, position = _sun(minutes, interval_minutes)
    day_length = 12.0 + DAY_LENGTH_SWING_H * season
    # The array's peak sits at peak_at of the day; w = position^k moves it there (w = ½).
    peak_at = 0.5 + peak_shift_h / day_length
    warped = np.clip(position, 0.0, 1.0) ** (np.log(0.5) / np.log(peak_at))
    shape = np.where(
        (position > 0.0) & (position < 1.0), np.sin(np.pi * warped) ** SHAPE_POWER, 0.0
    )
    clear_kw = rating_kw * (CLEAR_PEAK_KW_PER_KW + CLEAR_PEAK_SEASONAL * season)
    noise = lognormal_noise(PV_NOISE_SIGMA, seed, Stream.PV_NOISE, minutes, meters)
    sky = sky_clearness(seed, feeders, day, minutes)
    result: FloatArray = clear_kw * shape * sky * noise * (interval_minutes / 60.0)
    return result


def ev_kwh(
    seed: int,
    meters: np.ndarray,
    minutes: np.ndarray | int,
    interval_minutes: int,
    timer: np.ndarray,
    frequency: np.ndarray,
    arrival_h: np.ndarray,
) -> FloatArray:
    """kWh drawn by the EV chargers of ``meters`` in each interval, given their traits
    (SiteTraits.ev_timer, .ev_frequency, .ev_arrival_h, shaped like the meters)."""
    end = np.asarray(minutes, dtype=np.float64)
    start = end - interval_minutes
    day = (end - interval_minutes / 2.0 - EV_DAY_START_MIN) // MINUTES_PER_DAY
    session, when, energy_draw = hash_fields(hashes(seed, Stream.EV_SESSION, meters, day), 3)
    on_arrival = np.clip(arrival_h + EV_ARRIVAL_SPREAD_H * (2.0 * when - 1.0), EV_EARLIEST_H, 23.5)
    hour = np.where(timer, EV_TIMER_START_H + when, on_arrival)
    session_start = day * MINUTES_PER_DAY + EV_DAY_START_MIN + (hour - 12.0) * 60.0
    energy = EV_SESSION_KWH[0] + (EV_SESSION_KWH[1] - EV_SESSION_KWH[0]) * energy_draw
    session_end = session_start + energy / EV_CHARGER_KW * 60.0
    overlap = np.clip(np.minimum(end, session_end) - np.maximum(start, session_start), 0.0, None)
    result: FloatArray = np.where(session < frequency, EV_CHARGER_KW * overlap / 60.0, 0.0)
    return result


def _idle(minutes: np.ndarray | int, interval_minutes: int) -> tuple[bool, bool]:
    """(no array generates, no charger runs) for one read time; (False, False) for arrays of
    them: a cheap test that spares most intervals of a batch the per-meter work."""
    if np.ndim(minutes) > 0:
        return False, False
    middle = int(minutes) - interval_minutes / 2.0
    day, hour = divmod(middle / 60.0, 24.0)
    season = math.sin(2.0 * math.pi * (day % DAYS_PER_YEAR - EQUINOX_DAY) / DAYS_PER_YEAR)
    half_day = (12.0 + DAY_LENGTH_SWING_H * season) / 2.0
    dark = abs(hour - SOLAR_NOON_H) >= half_day
    return dark, EV_IDLE_HOURS[0] <= hour <= EV_IDLE_HOURS[1]


def net_metered(
    seed: int,
    meters: np.ndarray,
    feeders: np.ndarray | int,
    minutes: np.ndarray | int,
    interval_minutes: int,
    load: FloatArray,
    mix: FleetMix,
) -> tuple[FloatArray, FloatArray]:
    """(delivered, received) kWh of each interval, from the household ``load`` (shaped like
    meters × minutes, one meter per row): EV charging added, PV generation netted."""
    received = np.zeros(np.shape(load))
    if mix.pv_share <= 0.0 and mix.ev_share <= 0.0:
        return load, received
    meters = np.asarray(meters)
    traits = site_traits(seed, meters)
    no_sun, no_charging = _idle(minutes, interval_minutes)
    delivered = np.array(load, dtype=np.float64)  # a copy: the caller's load stays as it was
    ndim = meters.ndim
    ev = traits.ev_draw < mix.ev_share
    if not no_charging and ev.any():
        delivered[ev] += ev_kwh(
            seed,
            meters[ev],
            minutes,
            interval_minutes,
            _rows(traits.ev_timer, ev, ndim),
            _rows(traits.ev_frequency, ev, ndim),
            _rows(traits.ev_arrival_h, ev, ndim),
        )
    pv = traits.pv_draw < mix.pv_share
    if not no_sun and pv.any():
        generated = pv_kwh(
            seed,
            meters[pv],
            feeders[pv] if np.ndim(feeders) else feeders,  # type: ignore[index]
            minutes,
            interval_minutes,
            _rows(traits.pv_rating_kw, pv, ndim),
            _rows(traits.peak_shift_h, pv, ndim),
        )
        net = delivered[pv] - generated
        delivered[pv] = np.maximum(net, 0.0)
        received[pv] = np.maximum(-net, 0.0)
    return delivered, received
