"""Theft suspects scored against the emulator's ground truth, for bench/theft.py.

Truth is recomputed from the events and the fleet mix the way the generator applies them
(``producer.events.members``, ``producer.diversity.has_pv``/``has_ev``), never read back
from the database. Who is a thief, and which honest group a meter belongs to, come from
small functions of a case and a day: a kind of honest meter is a ``Group`` with a function
naming its meters, and its false alarms are scored like the others.

Recall counts the thieves that were judged: a meter-day under 80% of its reads is
insufficient data (0009), neither a hit nor a miss, and the tables print how many.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from producer.diversity import NO_PV_OR_EV, FleetMix, has_ev, has_pv
from producer.events import Event, EventType, members
from producer.fleet import feeder_meters
from producer.randomness import text_seed

FEEDERS = 25
START = datetime(2026, 3, 1, tzinfo=UTC)  # day 1; its reads end in (START, START + 1 day]


def day_start(day: int) -> datetime:
    """The start of day ``day`` (1-based, UTC): the day's reads end in (start, next start]."""
    return START + timedelta(days=day - 1)


@dataclass(frozen=True)
class Group:
    """Honest meters of one kind on a day; a meter is counted in the first group naming it
    (the case's order), and honest meters no group names are "clean"."""

    name: str
    meters: Callable[[Case, int], set[str]]


@dataclass(frozen=True)
class Target:
    """A bar every scored pattern (precision, recall) or group (false_alarm_rate) must
    clear; ``at_most`` for a rate that must stay under it."""

    label: str
    measure: str
    bound: float
    at_most: bool = False

    def misses(self, scores: Iterable[PatternScore | GroupScore]) -> tuple[int, list[str]]:
        """How many scores it applied to, and those that missed it."""
        applied, missed = 0, []
        for score in scores:
            value = getattr(score, self.measure, None)
            if value is None:
                continue
            applied += 1
            if value > self.bound if self.at_most else value < self.bound:
                missed.append(f"{score.where} {value:.3f}")
        return applied, missed


@dataclass(frozen=True)
class Case:
    """One tenant of a scenario: its fleet and history, its events, what is scored."""

    tenant: str
    meters: int
    days: int
    scored_days: tuple[int, ...]
    events: tuple[Event, ...] = ()
    groups: tuple[Group, ...] = ()
    targets: tuple[Target, ...] = ()
    mix: FleetMix = NO_PV_OR_EV

    @property
    def seed(self) -> int:
        """The emulator's seed: fixed by the tenant id, so every run draws the same meters."""
        return text_seed(self.tenant)

    def all_meters(self) -> set[str]:
        return {meter_id(self.tenant, number) for number in range(1, self.meters + 1)}


# ---------------------------------------------------------------- ground truth


def meter_id(tenant: str, number: int) -> str:
    return f"{tenant}-MTR-{number:05d}"


def covers(event: Event, day: int) -> bool:
    """Whether the event touches any read of the day (reads ending in (start, next start])."""
    return event.starts_at < day_start(day + 1) and event.ends_at > day_start(day)


def event_members(case: Case, event: Event) -> set[str]:
    """The meters the event affects, as the generator picks them."""
    feeder = int(event.feeder_id.removeprefix("FEEDER_"))
    numbers = feeder_meters(feeder, 1, case.meters, FEEDERS)
    chosen = numbers[members(case.seed, event, numbers)]
    return {meter_id(case.tenant, int(number)) for number in chosen}


def events_on(case: Case, day: int, event_type: EventType) -> list[Event]:
    return [e for e in case.events if e.event_type is event_type and covers(e, day)]


def thieves(case: Case, day: int) -> dict[str, set[str]]:
    """Per pattern, the meters stealing on the day."""
    found: dict[str, set[str]] = {}
    for event in events_on(case, day, EventType.THEFT):
        found.setdefault(event.params["pattern"], set()).update(event_members(case, event))
    return found


def theft_feeders(case: Case, day: int) -> dict[str, set[str]]:
    """Per pattern, the feeders it is on that day: the flags there are attributed to it."""
    found: dict[str, set[str]] = {}
    for event in events_on(case, day, EventType.THEFT):
        found.setdefault(event.params["pattern"], set()).add(event.feeder_id)
    return found


def in_events_of(event_type: EventType) -> Callable[[Case, int], set[str]]:
    """A group's meters: those in an event of ``event_type`` touching the day."""

    def meters(case: Case, day: int) -> set[str]:
        return set().union(*(event_members(case, e) for e in events_on(case, day, event_type)))

    return meters


def with_trait(
    trait: Callable[[int, np.ndarray, FleetMix], np.ndarray],
) -> Callable[[Case, int], set[str]]:
    """A group's meters: those of the fleet with a trait of the mix (PV, EV)."""

    def meters(case: Case, day: int) -> set[str]:
        numbers = np.arange(1, case.meters + 1, dtype=np.int64)
        chosen = numbers[trait(case.seed, numbers, case.mix)]
        return {meter_id(case.tenant, int(number)) for number in chosen}

    return meters


OUTAGE = Group("outage", in_events_of(EventType.COMMS_OUTAGE))  # lost reads that day
SAG = Group("sag", in_events_of(EventType.VOLTAGE_SAG))
VACANT = Group("vacant", in_events_of(EventType.VACANCY))
PV = Group("pv", with_trait(has_pv))
EV = Group("ev", with_trait(has_ev))


def honest_groups(case: Case, day: int, stealing: set[str]) -> dict[str, set[str]]:
    """The honest meters of the day by group, "clean" last."""
    remaining = case.all_meters() - stealing
    groups: dict[str, set[str]] = {}
    for group in case.groups:
        groups[group.name] = group.meters(case, day) & remaining
        remaining -= groups[group.name]
    groups["clean"] = remaining
    return groups


# ---------------------------------------------------------------- scores


@dataclass(frozen=True)
class Verdicts:
    """A tenant-day as the detector returned it."""

    flagged: dict[str, str]  # suspect meter -> its feeder
    unjudged: set[str]  # insufficient data: neither a suspect nor cleared


@dataclass(frozen=True)
class PatternScore:
    where: str
    day: int
    pattern: str
    feeders: tuple[str, ...]
    thieves: int
    unjudged: int
    flagged: int  # every suspect on the pattern's feeders
    hits: int

    @property
    def precision(self) -> float | None:
        return self.hits / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        judged = self.thieves - self.unjudged
        return self.hits / judged if judged else None


@dataclass(frozen=True)
class GroupScore:
    where: str
    day: int
    group: str
    meter_days: int
    unjudged: int
    alarms: int

    @property
    def false_alarm_rate(self) -> float | None:
        return self.alarms / self.meter_days if self.meter_days else None


def score_day(
    case: Case, day: int, verdicts: Verdicts
) -> tuple[list[PatternScore], list[GroupScore]]:
    """Per pattern: thieves and the flags on its feeders; per honest group: alarms."""
    stealing = thieves(case, day)
    feeders = theft_feeders(case, day)
    patterns = []
    for pattern in sorted(stealing):
        truth = stealing[pattern]
        found = {m for m, feeder in verdicts.flagged.items() if feeder in feeders[pattern]}
        patterns.append(
            PatternScore(
                where=f"{case.tenant} day {day} {pattern}",
                day=day,
                pattern=pattern,
                feeders=tuple(sorted(feeders[pattern], key=_feeder_number)),
                thieves=len(truth),
                unjudged=len(truth & verdicts.unjudged),
                flagged=len(found),
                hits=len(truth & found),
            )
        )
    groups = [
        GroupScore(
            where=f"{case.tenant} day {day} {name}",
            day=day,
            group=name,
            meter_days=len(meters),
            unjudged=len(meters & verdicts.unjudged),
            alarms=len(meters & verdicts.flagged.keys()),
        )
        for name, meters in honest_groups(case, day, set().union(*stealing.values())).items()
    ]
    return patterns, groups


def _feeder_number(feeder_id: str) -> int:
    return int(feeder_id.removeprefix("FEEDER_"))


# ---------------------------------------------------------------- printing


def pattern_table(scores: Sequence[PatternScore]) -> list[str]:
    lines = ["  day  pattern  feeders       thieves  unjudged  flagged  hits  precision  recall"]
    for s in scores:
        feeders = ",".join(str(_feeder_number(f)) for f in s.feeders)
        lines.append(
            f"  {s.day:3d}  {s.pattern:7s}  {feeders:12s}  {s.thieves:7,d}  {s.unjudged:8,d}"
            f"  {s.flagged:7,d}  {s.hits:4,d}  {_ratio(s.precision):>9s}  {_ratio(s.recall):>6s}"
        )
    return lines


def group_table(scores: Sequence[GroupScore]) -> list[str]:
    lines = ["  day  honest group  meter-days  unjudged  alarms   rate"]
    for s in scores:
        rate = "-" if s.false_alarm_rate is None else f"{100 * s.false_alarm_rate:.2f}%"
        lines.append(
            f"  {s.day:3d}  {s.group:12s}  {s.meter_days:10,d}  {s.unjudged:8,d}"
            f"  {s.alarms:6,d}  {rate:>6s}"
        )
    return lines


def targets_line(
    cases: Sequence[Case], scores: Sequence[Sequence[PatternScore | GroupScore]]
) -> str:
    """Each target of the scenario's cases: holds, or fails with the misses named."""
    labels: dict[str, Target] = {}
    applies: dict[str, list[PatternScore | GroupScore]] = {}
    for case, case_scores in zip(cases, scores, strict=True):
        for target in case.targets:
            labels.setdefault(target.label, target)
            applies.setdefault(target.label, []).extend(case_scores)
    verdicts = []
    for label, target in labels.items():
        applied, missed = target.misses(applies[label])
        if not missed:
            verdicts.append(f"{label}: holds ({applied} of {applied})")
        else:
            shown = "; ".join(missed[:10]) + ("; …" if len(missed) > 10 else "")
            verdicts.append(f"{label}: FAILS on {len(missed)} of {applied} ({shown})")
    return "targets: " + ("\n         ".join(verdicts) if verdicts else "none")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
