"""Honest readings: what a meter would report with no event in force.

Pure and vectorised: every function takes arrays of meter numbers and epoch
minutes (broadcast together) and draws its randomness from hashes of them.

kWh per interval = the meter's mean daily energy × the daily shape at that time
× the interval's share of a day × multiplicative noise. The daily shape is a
residential load curve — a night trough of base load, a morning peak and a
higher evening peak, a later and flatter morning at weekends, a summer
afternoon (cooling) bump and heavier winter mornings and evenings (heating) —
normalised so that its mean over a year is 1. Mean daily energies are
lognormal across meters with a fleet mean of the US residential average
(EIA: 10,715 kWh a year in 2020, 29.4 kWh a day).

Voltage = the feeder's level + the meter's offset − a drop that grows with the
feeder's load + noise, with rare natural excursions; it centres near 121 V,
well inside ANSI C84.1 Range A (114–126 V).

Time of day is UTC (the fleet's clock), taken at the middle of the interval
that ends at ``read_at`` (reads are interval-ending).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import numpy as np

from producer.randomness import FloatArray, Stream, lognormal_noise, normal, uniform

MEAN_DAILY_KWH: Final = 10_715 / 365  # EIA, US residential, 2020
SCALE_SIGMA: Final = 0.5  # spread of log(mean daily kWh) across meters
SHIFT_SIGMA_H: Final = 0.75  # spread of a household's daily rhythm, hours
KWH_NOISE_SIGMA: Final = 0.3  # per-interval multiplicative noise (log scale)
NOMINAL_V: Final = 120.0
FEEDER_V_CENTRE: Final = 121.0
FEEDER_V_SPREAD: Final = 1.5  # feeder levels are uniform in centre ± this
METER_V_SIGMA: Final = 0.8
VOLTAGE_NOISE_SIGMA: Final = 0.4
LOAD_DROP_V: Final = 1.2  # volts lost per unit of load above the yearly mean
EXCURSION_RATE: Final = 0.002  # share of reads with a natural sag or swell
NATURAL_V_RANGE: Final = (108.0, 129.0)  # event-free voltages never leave this
MINUTES_PER_DAY: Final = 1_440
DAYS_PER_YEAR: Final = 365.2425


def _bump(hours: FloatArray, centre: float, width: float) -> FloatArray:
    """A Gaussian bump on the 24-hour circle."""
    distance = (hours - centre + 12.0) % 24.0 - 12.0
    result: FloatArray = np.exp(-0.5 * (distance / width) ** 2)
    return result


def daily_shape(hours: FloatArray, weekend: FloatArray, day_of_year: FloatArray) -> FloatArray:
    """The residential load curve (not normalised); ``weekend`` is 0 or 1."""
    summer = np.maximum(0.0, np.cos(2 * np.pi * (day_of_year - 200) / DAYS_PER_YEAR))
    winter = np.maximum(0.0, np.cos(2 * np.pi * (day_of_year - 15) / DAYS_PER_YEAR))
    cooling = 0.45 * summer * _bump(hours, 16.5, 2.8)
    if np.ndim(weekend) == 0:  # one read time: only its own curve is needed
        return _day_curve(hours, bool(weekend), winter) + cooling
    result: FloatArray = (
        np.where(weekend, _day_curve(hours, True, winter), _day_curve(hours, False, winter))
        + cooling
    )
    return result


def _day_curve(hours: FloatArray, weekend: bool, winter: FloatArray) -> FloatArray:
    heating = 1.0 + 0.25 * winter
    base = 1.0 + 0.1 * winter
    if weekend:  # a later, flatter morning and more use at midday
        curve = (
            0.32 * base
            + 0.45 * heating * _bump(hours, 9.5, 2.0)
            + 0.35 * _bump(hours, 13.5, 3.0)
            + 0.95 * heating * _bump(hours, 19.0, 2.4)
        )
    else:
        curve = (
            0.30 * base
            + 0.55 * heating * _bump(hours, 7.0, 1.2)
            + 0.20 * _bump(hours, 12.5, 2.5)
            + 1.00 * heating * _bump(hours, 19.0, 2.2)
        )
    result: FloatArray = curve
    return result


def _calendar(midpoint_minutes: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Hour of day, weekend flag and day of year of epoch minutes (UTC)."""
    days = midpoint_minutes // MINUTES_PER_DAY
    hours = (midpoint_minutes % MINUTES_PER_DAY) / 60.0
    weekend = ((days + 3) % 7) >= 5  # 1970-01-01 was a Thursday; Monday is 0
    day_of_year = days % DAYS_PER_YEAR
    return hours, weekend.astype(np.float64), day_of_year


def _yearly_mean_shape() -> float:
    minutes = np.arange(0, 364 * MINUTES_PER_DAY, 15, dtype=np.float64) + 7.5
    hours, weekend, day_of_year = _calendar(minutes)
    return float(daily_shape(hours, weekend, day_of_year).mean())


SHAPE_MEAN: Final = _yearly_mean_shape()


@dataclass(frozen=True)
class MeterTraits:
    """What is constant about each meter: drawn once, kept for the next interval."""

    shift_h: FloatArray  # the household's daily rhythm, hours later (+) or earlier (-)
    daily_kwh: FloatArray  # mean daily energy; lognormal, fleet mean MEAN_DAILY_KWH
    voltage_offset: FloatArray  # its place on the feeder, volts


def meter_traits(seed: int, meters: np.ndarray) -> MeterTraits:
    """The traits of ``meters`` (any shape), from a small cache of recent fleets."""
    flat = np.ascontiguousarray(meters, dtype=np.int64)
    traits = _traits(seed, flat.tobytes())
    if flat.ndim == 1:
        return traits
    return MeterTraits(*(np.reshape(value, flat.shape) for value in vars(traits).values()))


@functools.lru_cache(maxsize=1024)
def _traits(seed: int, meter_bytes: bytes) -> MeterTraits:
    meters = np.frombuffer(meter_bytes, dtype=np.int64)
    mu = np.log(MEAN_DAILY_KWH) - SCALE_SIGMA**2 / 2
    return MeterTraits(
        shift_h=np.clip(SHIFT_SIGMA_H * normal(seed, Stream.METER_SHIFT, meters), -2.0, 2.0),
        daily_kwh=np.exp(mu + SCALE_SIGMA * normal(seed, Stream.METER_SCALE, meters)),
        voltage_offset=np.clip(
            METER_V_SIGMA * normal(seed, Stream.METER_VOLTAGE, meters), -2.5, 2.5
        ),
    )


def load_ratio(traits: MeterTraits, minutes: np.ndarray | int, interval_minutes: int) -> FloatArray:
    """Each meter's expected load at that time relative to its yearly mean (mean 1)."""
    hours, weekend, day_of_year = _calendar(np.asarray(minutes) - interval_minutes / 2.0)
    result: FloatArray = daily_shape(hours - traits.shift_h, weekend, day_of_year) / SHAPE_MEAN
    return result


def honest_kwh(
    seed: int,
    meters: np.ndarray,
    minutes: np.ndarray | int,
    interval_minutes: int,
    ratio: FloatArray | None = None,
) -> FloatArray:
    """kWh of each interval ending at epoch ``minutes``; never negative."""
    traits = meter_traits(seed, meters)
    if ratio is None:
        ratio = load_ratio(traits, minutes, interval_minutes)
    noise = lognormal_noise(KWH_NOISE_SIGMA, seed, Stream.KWH_NOISE, minutes, meters)
    share = interval_minutes / MINUTES_PER_DAY
    result: FloatArray = traits.daily_kwh * ratio * share * noise
    return result


def feeder_level(seed: int, feeders: np.ndarray | int) -> FloatArray:
    result: FloatArray = FEEDER_V_CENTRE + FEEDER_V_SPREAD * (
        2.0 * uniform(seed, Stream.FEEDER_VOLTAGE, feeders) - 1.0
    )
    return result


def honest_voltage(
    seed: int,
    meters: np.ndarray,
    feeders: np.ndarray | int,
    minutes: np.ndarray | int,
    ratio: FloatArray,
) -> FloatArray:
    """Volts at each meter at epoch ``minutes``, given its load ratio."""
    traits = meter_traits(seed, meters)
    drop = np.clip(LOAD_DROP_V * (ratio - 1.0), -0.8, 2.0)
    noise = VOLTAGE_NOISE_SIGMA * normal(seed, Stream.VOLTAGE_NOISE, minutes, meters)
    draw = uniform(seed, Stream.EXCURSION, minutes, meters)
    # A rare sag (two in three) or swell of 3–7 V; the draw below the rate, rescaled,
    # gives its direction and size.
    within = draw / EXCURSION_RATE
    excursion = np.where(
        within < 1.0, np.where(within < 2 / 3, -1.0, 1.0) * (3.0 + 4.0 * ((within * 3) % 1.0)), 0.0
    )
    volts = feeder_level(seed, feeders) + traits.voltage_offset - drop + noise + excursion
    result: FloatArray = np.clip(volts, *NATURAL_V_RANGE)
    return result
