"""The late jobs of a buffered outage against the job cap: pure planning, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from producer.backlog import as_read, late_jobs, missed_read_times, plan_with_backlog
from producer.batch import generate_batch
from producer.events import Event, EventType
from producer.request import PublishRequest

NOON = datetime(2026, 3, 2, 12, tzinfo=UTC)


def request(meters: int, read_at: datetime = NOON, batch: int = 100) -> PublishRequest:
    return PublishRequest(
        tenant_id="BACKLOG",
        interval_minutes=15,
        batch_size=batch,
        meter_count=meters,
        feeder_count=10,
        dry_run=False,
        read_at=read_at,
    )


def outage(event_id: int, feeder: int, hours: float, ends_at: datetime = NOON) -> Event:
    return Event(
        event_id=event_id,
        tenant_id="BACKLOG",
        event_type=EventType.COMMS_OUTAGE,
        feeder_id=f"FEEDER_{feeder}",
        starts_at=ends_at - timedelta(hours=hours),
        ends_at=ends_at - timedelta(minutes=5),  # ends within the interval before noon
        fraction=1.0,
        params={"buffered": True},
    )


def test_missed_read_times_are_the_interval_ends_inside_the_outage() -> None:
    event = outage(1, 1, 1.0)  # 11:00 to 11:55
    assert [t.strftime("%H:%M") for t in missed_read_times(event, 15)] == [
        "11:15",
        "11:30",
        "11:45",
    ]
    assert [t.strftime("%H:%M") for t in missed_read_times(event, 60)] == []
    assert len(missed_read_times(event, 5)) == 11  # 11:05 .. 11:55


def test_a_fleet_that_fits_the_cap_is_never_truncated_for_a_backlog() -> None:
    """A backlog used to shrink the window of a fleet that fit, and the cursor then made
    the next interval read only the rest of the fleet."""
    fleet = request(1_000)  # 10 feeders of 100 meters: 10 jobs
    event = outage(1, 1, 8.0)
    missed = len(missed_read_times(event, 15))  # a job each (100 meters of FEEDER_1)
    plan, late = plan_with_backlog(fleet, [event], cap=30, cursor=1)
    assert not plan.truncated and plan.meters == 1_000 and plan.next_cursor == 1
    assert missed == 31 and plan.jobs + len(late.jobs) == 30  # 20 of the 31 fit
    assert late.dropped == 11 and late.warnings()
    kept = [job.read_at for job in late.jobs]
    assert kept == sorted(kept, reverse=True) and kept[0] == NOON - timedelta(minutes=15)


def test_the_newest_read_times_are_kept_across_outages() -> None:
    long, short = outage(1, 1, 24.0), outage(2, 2, 0.5)
    missed = len(missed_read_times(long, 15)) + len(missed_read_times(short, 15))
    plan, late = plan_with_backlog(request(1_000), [long, short], cap=20, cursor=1)
    assert plan.jobs + len(late.jobs) == 20
    assert {job.outage.event_id for job in late.jobs} == {1, 2}  # the short one is not lost
    assert late.dropped == missed - 10


def test_a_truncated_fleet_gives_the_backlog_at_most_half_the_cap() -> None:
    fleet = request(100_000, batch=500)  # 200 jobs, over the cap of 50
    plan, late = plan_with_backlog(fleet, [outage(1, 3, 8.0)], cap=50, cursor=1)
    assert plan.truncated and plan.max_jobs == 50
    assert plan.jobs + len(late.jobs) <= 50 and len(late.jobs) <= 25
    window = set(range(plan.first_meter, plan.last_meter + 1))
    assert all(set(job.meters.tolist()) <= window for job in late.jobs)
    assert "cap of 50" in (plan.truncation_warning() or "")


def test_no_backlog_leaves_the_plan_as_it_was() -> None:
    plan, late = plan_with_backlog(request(1_000), [], cap=30, cursor=1)
    assert (plan.jobs, late.jobs, late.dropped, late.warnings()) == (10, [], 0, [])
    later = request(1_000, read_at=NOON + timedelta(minutes=15))  # the interval after
    assert plan_with_backlog(later, [outage(1, 1, 1.0)], cap=30, cursor=1)[1].jobs == []


def test_a_meter_in_two_overlapping_buffered_outages_gets_its_reads() -> None:
    """Each outage's late job used to leave the other outage in force, which dropped the
    meter's read again."""
    first = outage(1, 4, 2.0)
    second = Event(**{**vars(outage(2, 4, 1.0)), "ends_at": NOON - timedelta(minutes=50)})
    fleet = request(1_000)
    jobs = list(late_jobs(fleet, [first, second], 1, fleet.meter_count))
    assert jobs and {job.outage.event_id for job in jobs} == {1}  # the second ended earlier
    events = as_read([first, second], fleet)
    assert events == []
    for job in jobs:
        batch = generate_batch(
            publish_id="late",
            tenant_id="BACKLOG",
            feeder=job.feeder,
            meter_numbers=job.meters,
            read_at=job.read_at,
            interval_minutes=15,
            events=events,
            late=True,
        )
        assert len(batch) == len(job.meters) and batch.late
