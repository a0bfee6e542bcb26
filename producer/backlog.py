"""Buffered comms outages: the reads a meter kept through one, delivered once it is over.

A meter keeps its interval data while its link is down and sends the missed intervals
when the link returns. So a buffered outage drops its members' reads while it lasts
(like any outage), and the publish of the first interval after it, for the meters it
covers, also carries the missed reads: one job per feeder, read time and batch of
members, generated as they were read (theft or a sag then still applies), marked late.
They go through the same admission, job cap and rate limit as every other job. A
publish of that interval again (a retry) delivers them again: the insert skips reads
already stored, so nothing is doubled.

The backlog counts towards the job cap: the regular window is planned with room for it
(at most half the cap). A backlog larger than its room is cut to the newest read
times, as a meter's buffer keeps the newest, and the publish warns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from producer.events import Event, EventType, members
from producer.fleet import IntArray, feeder_meters
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


def ended_outages(request: PublishRequest, events: Sequence[Event]) -> list[Event]:
    """Buffered outages whose first read after them is this publish's interval."""
    step = timedelta(minutes=request.interval_minutes)
    return [
        event
        for event in events
        if event.event_type is EventType.COMMS_OUTAGE
        and event.params.get("buffered")
        and event.ends_at < request.read_at <= event.ends_at + step
    ]


def missed_read_times(outage: Event, interval_minutes: int) -> list[datetime]:
    """The read times in (startsAt, endsAt] on the interval's grid: those it took."""
    step = timedelta(minutes=interval_minutes)
    since_epoch = outage.starts_at - EPOCH
    read_at = EPOCH + (since_epoch // step + 1) * step
    times = []
    while read_at <= outage.ends_at:
        times.append(read_at)
        read_at += step
    return times


def late_jobs(
    request: PublishRequest, events: Sequence[Event], first_meter: int, last_meter: int
) -> Iterator[LateJob]:
    """Every late job for the meters first..last, newest read times first."""
    seed = text_seed(request.tenant_id)
    for outage in ended_outages(request, events):
        feeder = int(outage.feeder_id.removeprefix("FEEDER_"))
        if feeder > request.feeder_count:
            continue  # a feeder this fleet does not have
        meters = feeder_meters(feeder, first_meter, last_meter, request.feeder_count)
        kept = meters[members(seed, outage, meters)]
        if len(kept) == 0:
            continue
        for read_at in reversed(missed_read_times(outage, request.interval_minutes)):
            for start in range(0, len(kept), request.batch_size):
                yield LateJob(outage, feeder, read_at, kept[start : start + request.batch_size])


def backlog(
    request: PublishRequest, events: Sequence[Event], first_meter: int, last_meter: int, room: int
) -> tuple[list[LateJob], int]:
    """The late jobs that fit in ``room`` jobs, and how many did not."""
    jobs = list(late_jobs(request, events, first_meter, last_meter))
    return jobs[:room], max(0, len(jobs) - room)


def room_needed(request: PublishRequest, events: Sequence[Event], max_jobs: int) -> int:
    """Jobs to keep free for the backlog of the whole fleet, at most half the cap."""
    if not ended_outages(request, events):
        return 0
    needed = sum(1 for _ in late_jobs(request, events, 1, request.meter_count))
    return min(needed, max_jobs // 2)


def without(events: Sequence[Event], outage: Event) -> list[Event]:
    """The events as a late job's reads were read: its own outage was not in the way."""
    return [event for event in events if event.event_id != outage.event_id]


def late_reads(jobs: Sequence[LateJob]) -> int:
    return int(np.sum([len(job.meters) for job in jobs])) if jobs else 0
