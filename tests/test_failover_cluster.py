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

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridlens.keys import Keys
from tests.failover import (
    Publish,
    check_every_read_once,
    check_going_on,
    dead_letters,
    gridlens,
    report_resumed,
    wait_until_part_way,
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
            wait_until_part_way(database_url, tenant)
            old = deployment.primary_for_key(keys.stream)
            killed_at = datetime.now(UTC)
            deployment.kill(old)
            new = deployment.wait_for_new_primary(keys.stream, old)
            deployment.restart(old)  # back as the new primary's replica
            answer = running.result()
        check_every_read_once(stack, database_url, tenant, answer)
        report_resumed(
            "Cluster: kill -9 of the queue's primary to the first insert after it",
            database_url,
            tenant,
            killed_at,
        )
        check_going_on(stack, database_url, tenant, lambda: dead_letters(new, keys))
