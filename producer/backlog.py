"""Buffered comms outages: the reads a meter kept through one, delivered once it is over.

A meter keeps its interval data while its link is down and sends the missed intervals
when the link returns. So a buffered outage drops its members' reads while it lasts
(like any outage), and the publish of the first interval after it, for the meters it
covers, also carries the missed reads: one job per feeder, read time and batch of
members, generated as they were read (a theft or sag then still applies; an outage
whose link is back by now does not), marked late. They go through the same admission,
job cap and rate limit as every other job. A publish of that interval again (a retry)
delivers them again: the insert skips reads already stored, so nothing is doubled.

The backlog shares the job cap. A fleet that fits the cap keeps its whole window, and
the backlog gets the jobs left over; a fleet already truncated to windows gives up to
half the cap to it, its window shrinking. A backlog larger than its room is cut to the
newest read times, as a meter's full buffer keeps the newest, and the publish warns.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from producer.events import Event, EventType, members
from producer.fleet import IntArray, feeder_meters
from producer.planner import Plan, plan_publish
from producer.randomness import text_seed
from producer.request import PublishRequest

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LateJob:
    """Reads of one feeder's members of an outage, at one read time it missed."""

    outage: Event
    feeder: int
    read_at: datetime
    meters: IntArray


@dataclass(frozen=True)
class Backlog:
    """The late jobs a publish carries, and how many its share of the job cap left out."""

    jobs: list[LateJob]
    dropped: int = 0

    @property
    def reads(self) -> int:
        return sum(len(job.meters) for job in self.jobs)

    def warnings(self) -> list[str]:
        if not self.dropped:
            return []
        return [
            f"a buffered outage's backlog needed {self.dropped} more jobs than the job cap "
            "left room for: its oldest read times were not delivered (as a meter's full "
            "buffer drops its oldest)"
        ]


def plan_with_backlog(
    request: PublishRequest, events: Sequence[Event], cap: int, cursor: int
) -> tuple[Plan, Backlog]:
    """The publish's plan and the late jobs it carries, jobs of both within ``cap``."""
    plan = plan_publish(request, cap, cursor)
    if not ended_outages(request, events):
        return plan, Backlog([])
    if plan.truncated:  # give the backlog up to half the cap: the window shrinks
        wanted = count(request, events, plan.first_meter, plan.last_meter)
        room = min(wanted, cap // 2)
        plan = dataclasses.replace(plan_publish(request, cap - room, cursor), max_jobs=cap)
    room = cap - plan.jobs
    wanted = count(request, events, plan.first_meter, plan.last_meter)
    newest = late_jobs(request, events, plan.first_meter, plan.last_meter)
    return plan, Backlog(list(itertools.islice(newest, room)), max(0, wanted - room))


def ended_outages(request: PublishRequest, events: Sequence[Event]) -> list[Event]:
    """Buffered outages whose first read after them is this publish's interval."""
    step = timedelta(minutes=request.interval_minutes)
    return [
        event
        for event in events
        if _buffered(event) and event.ends_at < request.read_at <= event.ends_at + step
    ]


def missed_read_times(outage: Event, interval_minutes: int) -> list[datetime]:
    """The read times in (startsAt, endsAt] on the interval's grid: those it took."""
    step = timedelta(minutes=interval_minutes)
    read_at = EPOCH + ((outage.starts_at - EPOCH) // step + 1) * step
    times = []
    while read_at <= outage.ends_at:
        times.append(read_at)
        read_at += step
    return times


def late_jobs(
    request: PublishRequest, events: Sequence[Event], first_meter: int, last_meter: int
) -> Iterator[LateJob]:
    """Every late job for the meters first..last, newest read times first across outages."""
    per_outage = [
        _outage_jobs(request, outage, kept, feeder)
        for outage, feeder, kept in _members(request, events, first_meter, last_meter)
    ]
    return heapq.merge(*per_outage, key=lambda job: job.read_at, reverse=True)


def count(
    request: PublishRequest, events: Sequence[Event], first_meter: int, last_meter: int
) -> int:
    """How many late jobs the meters first..last have, without building them."""
    return sum(
        len(missed_read_times(outage, request.interval_minutes))
        * math.ceil(len(kept) / request.batch_size)
        for outage, _, kept in _members(request, events, first_meter, last_meter)
    )


def as_read(events: Sequence[Event], request: PublishRequest) -> list[Event]:
    """The events as late reads were read: a buffered outage over by now was not in the
    way of the reads it kept, nor of those another outage kept."""
    return [e for e in events if not (_buffered(e) and e.ends_at < request.read_at)]


def _buffered(event: Event) -> bool:
    return event.event_type is EventType.COMMS_OUTAGE and bool(event.params.get("buffered"))


def _members(
    request: PublishRequest, events: Sequence[Event], first_meter: int, last_meter: int
) -> Iterator[tuple[Event, int, IntArray]]:
    """(outage, feeder, its members among meters first..last) of each ended outage."""
    seed = text_seed(request.tenant_id)
    for outage in ended_outages(request, events):
        feeder = int(outage.feeder_id.removeprefix("FEEDER_"))
        if feeder > request.feeder_count:
            continue  # a feeder this fleet does not have
        meters = feeder_meters(feeder, first_meter, last_meter, request.feeder_count)
        kept = meters[members(seed, outage, meters)]
        if len(kept):
            yield outage, feeder, kept


def _outage_jobs(
    request: PublishRequest, outage: Event, kept: IntArray, feeder: int
) -> Iterator[LateJob]:
    for read_at in reversed(missed_read_times(outage, request.interval_minutes)):
        for start in range(0, len(kept), request.batch_size):
            yield LateJob(outage, feeder, read_at, kept[start : start + request.batch_size])
