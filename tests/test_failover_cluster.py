"""The primary of the queue's slot killed mid-publish on a Redis Cluster.

Three primaries with a replica each (cluster-node-timeout 5000), the API and two
consumers connected in cluster mode (redis+cluster://) with GRIDLENS_REDIS_MIN_REPLICAS=1.
Every GridLens key shares one hash tag, so one slot, on one primary, holds the whole
queue. A 25,000-meter publish runs; once 5,000 of its reads are stored that primary is
killed with SIGKILL. Its replica takes the slot over; the dead node comes back and
rejoins as a replica. Afterwards, as under Sentinel (tests/test_failover_sentinel.py):
exactly the 25,000 reads stored once each, no dead letter, the same processes publish and
ingest another interval, and the time from the kill to the first insert is printed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gridlens.keys import Keys
from tests.failover import (
    AFTER_METERS,
    KILL_AT_ROWS,
    METERS,
    READ_AT,
    Publish,
    first_insert_after,
    gridlens,
    report,
    stored_reads,
    wait_for,
    wait_for_rows,
)
from tests.ha_redis import cluster_deployment

pytestmark = pytest.mark.failover

NODE_TIMEOUT_MS = 5_000


def test_a_cluster_failover_of_the_queues_slot_loses_and_doubles_no_read(
    database_url: str, namespace: str, tenant: str, tmp_path: Path
) -> None:
    keys = Keys(namespace)
    with (
        cluster_deployment(tmp_path / "redis", node_timeout_ms=NODE_TIMEOUT_MS) as deployment,
        gridlens(
            database_url,
            deployment.url,
            namespace,
            tmp_path,
            GRIDLENS_REDIS_MIN_REPLICAS="1",
        ) as stack,
    ):
        with Publish(stack.base, tenant) as running:
            wait_for(
                f"{KILL_AT_ROWS} reads stored",
                lambda: stored_reads(database_url, tenant)[0] >= KILL_AT_ROWS,
                60,
            )
            old = deployment.primary_for_key(keys.stream)
            killed_at = datetime.now(UTC)
            deployment.kill(old)
            new = deployment.wait_for_new_primary(keys.stream, old)
            deployment.restart(old)  # back as the new primary's replica
            answer = running.result()
        assert answer["reads"] == METERS and answer["jobs"] == 50
        assert answer["fullestSecondReads"] <= 2_500
        assert stack.fullest_second_ingested() <= 2_500

        wait_for_rows(database_url, tenant, METERS)
        resumed_at = first_insert_after(database_url, tenant, killed_at)
        assert resumed_at is not None
        report(
            "Cluster: kill -9 of the queue's primary to the first insert after it",
            (resumed_at - killed_at).total_seconds(),
        )

        later = READ_AT + timedelta(hours=1)
        with Publish(stack.base, tenant, meters=AFTER_METERS, read_at=later) as after:
            assert after.result()["reads"] == AFTER_METERS
        wait_for_rows(database_url, tenant, AFTER_METERS, later)

        assert stored_reads(database_url, tenant) == (METERS, METERS)
        with new.client() as primary:
            assert primary.xlen(keys.dead_letters) == 0
        assert stack.all_running(), "a GridLens process stopped"
        assert not stack.log_lines("side_task_died")
