"""A Redis primary killed mid-publish under Sentinel: GridLens follows the failover.

A primary, its replica and three sentinels (down-after-milliseconds 5000), the API and
two consumers with GRIDLENS_REDIS_MIN_REPLICAS=1. A 25,000-meter publish runs; once 5,000
of its reads are stored the primary is killed with SIGKILL. When the sentinels have
promoted the replica, the dead node's host comes back and the node rejoins as a replica
of the new primary (so that writes can be confirmed again). Afterwards:

* the publish answered 200 with 25,000 reads; its fullest 1-second window, by the
  publisher's count and by the ingested entries' ids, within the cap (2,500);
* the rows for that readAt are exactly the 25,000 reads, once each;
* nothing was dead-lettered;
* the same API and consumer processes publish and ingest another interval;
* the time from the kill to the first insert after it is printed.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gridlens.keys import Keys
from tests.failover import (
    AFTER_METERS,
    Publish,
    check_every_read_once,
    check_going_on,
    dead_letters,
    gridlens,
    report_resumed,
    wait_for,
    wait_for_rows,
    wait_until_part_way,
)
from tests.ha_redis import RedisNode, SentinelDeployment, sentinel_deployment

pytestmark = pytest.mark.failover

DOWN_AFTER_MS = 5_000  # the setting: the figure printed is the one to expect


def rejoin_as_replica(deployment: SentinelDeployment, node: RedisNode, primary: RedisNode) -> None:
    """The dead node's host is back: the node starts as a replica of the current primary,
    as an orchestrator restarting a Sentinel-managed pod starts it."""
    command = node.command
    node.command = [*command, "--replicaof", primary.host, str(primary.port)]
    try:
        deployment.restart(node)
    finally:
        node.command = command


def test_a_sentinel_failover_mid_publish_loses_and_doubles_no_read(
    database_url: str, namespace: str, tenant: str, tmp_path: Path
) -> None:
    keys = Keys(namespace)
    with (
        sentinel_deployment(tmp_path / "redis", down_after_ms=DOWN_AFTER_MS) as deployment,
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
            killed_at = datetime.now(UTC)
            old = deployment.kill_primary()
            new = deployment.wait_for_new_primary(old)
            rejoin_as_replica(deployment, old, new)
            answer = running.result()
        check_every_read_once(stack, database_url, tenant, answer)
        report_resumed(
            "Sentinel: kill -9 of the primary to the first insert after it",
            database_url,
            tenant,
            killed_at,
        )
        check_going_on(stack, database_url, tenant, lambda: dead_letters(new, keys))


def test_a_demoted_primary_wakes_blocked_reads_and_loses_no_write(
    database_url: str, namespace: str, tenant: str, tmp_path: Path
) -> None:
    """A failover the sentinels are told to make (SENTINEL FAILOVER): the old primary lives
    on as a replica. Consumers blocked in XREADGROUP on it, and the API's pooled connections
    to it, move to the new primary: the next publish is confirmed and ingested."""
    with (
        sentinel_deployment(tmp_path / "redis", down_after_ms=DOWN_AFTER_MS) as deployment,
        gridlens(
            database_url,
            deployment.url,
            namespace,
            tmp_path,
            GRIDLENS_REDIS_MIN_REPLICAS="1",
        ) as stack,
    ):
        with Publish(stack.base, tenant, meters=AFTER_METERS) as before:
            assert before.result()["reads"] == AFTER_METERS
        wait_for_rows(database_url, tenant, AFTER_METERS)  # the consumers block, idle, on it
        old = deployment.primary()
        deployment.sentinels[0].execute("SENTINEL", "FAILOVER", deployment.service)
        new = deployment.wait_for_new_primary(old)
        wait_for("the old primary demoted", lambda: old.role() == "slave", 30)

        check_going_on(stack, database_url, tenant, lambda: dead_letters(new, Keys(namespace)))


def test_a_primary_gone_silent_holds_no_blocked_read_forever(
    database_url: str, namespace: str, tenant: str, tmp_path: Path
) -> None:
    """SIGSTOP of the primary: its connections stay open and nothing answers, as when its
    host is cut off by the network. Reads blocked on it time out (the 5 s socket timeout)
    and are issued again on the replica the sentinels promote; the API's pooled connections
    too. (No minimum of replicas: the silent node never rejoins.)"""
    with (
        sentinel_deployment(tmp_path / "redis", down_after_ms=DOWN_AFTER_MS) as deployment,
        gridlens(database_url, deployment.url, namespace, tmp_path) as stack,
    ):
        with Publish(stack.base, tenant, meters=AFTER_METERS) as before:
            assert before.result()["reads"] == AFTER_METERS
        wait_for_rows(database_url, tenant, AFTER_METERS)  # the consumers block, idle, on it
        old = deployment.primary()
        assert old.pid is not None
        os.kill(old.pid, signal.SIGSTOP)  # the harness's SIGKILL ends it, stopped or not
        new = deployment.wait_for_new_primary(old)
        check_going_on(stack, database_url, tenant, lambda: dead_letters(new, Keys(namespace)))
