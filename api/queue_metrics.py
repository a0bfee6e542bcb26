"""The queue as Prometheus sees it: read from Redis when /metrics is scraped.

Consumers export what they did; only the queue itself can say what is still to
do, and whether anyone is doing it. Every API process exports the same figures
(aggregate them with max(), not sum()). While Redis does not answer,
gridlens_redis_up is 0 and the queue's figures are left out rather than stale.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from api.context import ApiContext
from api.status import live_consumers, queue_summary
from gridlens.connections import PrimaryReplication, primary_replication

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class QueueSnapshot:
    summary: dict[str, int] | None  # None: Redis did not answer
    consumers_alive: int
    reads_per_second_limit: int
    queue_depth_limit: int
    min_replicas: int
    replication: PrimaryReplication | None = None  # None: Redis did not answer


class QueueCollector(Collector):
    def __init__(self) -> None:
        self.snapshot: QueueSnapshot | None = None
        self.primary_run_id = ""  # of the primary serving the queue at the last scrape
        self.primary_changes = 0

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        if snapshot is None:  # nothing scraped through the API yet (e.g. a test's registry)
            return
        yield _gauge(
            "gridlens_publish_reads_per_second_limit",
            "Reads per second the shared limiter lets into the stream (SPEC §4 cap: 2500).",
            snapshot.reads_per_second_limit,
        )
        yield _gauge(
            "gridlens_queue_depth_limit",
            "Waiting + delayed jobs above which publishes are refused (SPEC §4 cap: 500).",
            snapshot.queue_depth_limit,
        )
        yield _gauge(
            "gridlens_redis_min_replicas",
            "Replicas that must acknowledge a job before a publish counts it enqueued.",
            snapshot.min_replicas,
        )
        yield _gauge(
            "gridlens_redis_up", "1 if Redis answered this scrape.", snapshot.summary is not None
        )
        if snapshot.summary is None or snapshot.replication is None:
            return
        yield from self._replication(snapshot.replication)
        queue = snapshot.summary
        yield _gauge(
            "gridlens_queue_waiting_jobs", "Jobs in the stream not yet delivered.", queue["waiting"]
        )
        yield _gauge(
            "gridlens_queue_pending_jobs",
            "Jobs delivered but not yet acknowledged.",
            queue["active"],
        )
        yield _gauge(
            "gridlens_queue_delayed_jobs",
            "Jobs reserved by publishes in progress, not yet written.",
            queue["delayed"],
        )
        completed = CounterMetricFamily(
            "gridlens_queue_completed_jobs", "Jobs acknowledged by any consumer."
        )
        completed.add_metric([], queue["completed"])
        yield completed
        yield _gauge(
            "gridlens_queue_dead_letter_entries",
            "Entries in the dead-letter stream.",
            queue["deadLettered"],
        )
        yield _gauge(
            "gridlens_queue_consumers_alive",
            "Consumer processes whose heartbeat is fresh.",
            snapshot.consumers_alive,
        )

    def _replication(self, replication: PrimaryReplication) -> Iterator[Metric]:
        yield _gauge(
            "gridlens_redis_connected_replicas",
            "Replicas connected to the primary that serves the queue.",
            replication.connected_replicas,
        )
        changes = CounterMetricFamily(
            "gridlens_redis_primary_changes",
            "Times this API process found another primary (or a restarted one) serving the queue.",
        )
        changes.add_metric([], self.primary_changes)
        yield changes

    def saw_primary(self, run_id: str) -> None:
        """Count a change of the primary serving the queue (a failover, a restart)."""
        if self.primary_run_id and run_id != self.primary_run_id:
            self.primary_changes += 1
            log.warning(
                "another redis primary serves the queue",
                extra={"action": "redis_primary_changed", "runId": run_id},
            )
        self.primary_run_id = run_id


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


COLLECTOR = QueueCollector()
REGISTRY.register(COLLECTOR)


async def refresh(ctx: ApiContext) -> None:
    """Read the queue for the scrape under way."""
    replication: PrimaryReplication | None
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_S):
            summary, consumers, replication = await asyncio.gather(
                queue_summary(ctx),
                live_consumers(ctx),
                primary_replication(ctx.redis, ctx.keys.stream),
            )
    except (RedisError, OSError, TimeoutError):  # down or slow: gridlens_redis_up says so
        summary, alive, replication = None, 0, None
    else:
        alive = consumers["consumersAlive"]
        COLLECTOR.saw_primary(replication.run_id)
    COLLECTOR.snapshot = QueueSnapshot(
        summary=summary,
        consumers_alive=alive,
        reads_per_second_limit=ctx.settings.caps.reads_per_second,
        queue_depth_limit=ctx.settings.caps.queue_depth,
        min_replicas=ctx.settings.redis_min_replicas,
        replication=replication,
    )
