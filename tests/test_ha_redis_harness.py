"""The Redis HA harness (tests/ha_redis.py) starts deployments that really fail over.

* Sentinel: a key written on the primary is on the replica; after the primary's SIGKILL
  the sentinels promote the replica, which answers ROLE master and still has the key.
* Cluster: a key written on its slot's primary is on that primary's replica; after the
  primary's SIGKILL the replica takes the slot over, the cluster is ok again, and the key
  is there.

Short timeouts (1 s) keep each failover to a few seconds; no GridLens server is involved.
"""

from __future__ import annotations

from pathlib import Path

import redis

from tests.ha_redis import RedisNode, cluster_deployment, sentinel_deployment, wait_for

DOWN_AFTER_MS = 1000  # a sentinel deems the killed primary down this soon
# Also twice this before the sentinels retry a failover whose election split the votes.
FAILOVER_TIMEOUT_MS = 5000
NODE_TIMEOUT_MS = 1000  # a cluster node deems the killed primary failing this soon
FAILOVER_WITHIN_S = 30.0
REPLICATED_WITHIN_S = 5.0
KEY = "{gridlens}:ami:reads"  # GridLens's keys share one hash tag: one slot, one primary
VALUE = "written before the kill"


def read_on_replica(node: RedisNode, key: str) -> str | None:
    """GET on a cluster replica, which answers MOVED unless the connection said READONLY."""
    client = node.client(single_connection_client=True)
    try:
        client.readonly()
        value = client.get(key)
    except redis.RedisError:
        return None
    finally:
        client.close()
    return None if value is None else str(value)


def test_sentinel_promotes_the_replica_with_the_data(tmp_path: Path) -> None:
    with sentinel_deployment(
        tmp_path, down_after_ms=DOWN_AFTER_MS, failover_timeout_ms=FAILOVER_TIMEOUT_MS
    ) as deployment:
        assert deployment.url.startswith(f"redis+sentinel://:{deployment.password}@127.0.0.1:")
        assert deployment.url.endswith("/gridlens/0")
        old = deployment.primary()
        (replica,) = deployment.replicas()
        assert old.execute("SET", KEY, VALUE) is True
        wait_for(
            "the key on the replica", lambda: replica.ask("GET", KEY) == VALUE, REPLICATED_WITHIN_S
        )
        assert deployment.replicas_in_sync()

        assert deployment.kill_primary() is old
        assert not old.alive()
        new = deployment.wait_for_new_primary(old, timeout_s=FAILOVER_WITHIN_S)

        assert new is replica
        assert deployment.primary() is new
        assert new.role() == "master"
        assert new.execute("GET", KEY) == VALUE


def test_cluster_replica_takes_the_slot_over_with_the_data(tmp_path: Path) -> None:
    with cluster_deployment(tmp_path, node_timeout_ms=NODE_TIMEOUT_MS) as cluster:
        assert cluster.url.startswith(f"redis+cluster://:{cluster.password}@127.0.0.1:")
        assert cluster.url.count(",") == 2
        old = cluster.primary_for_key(KEY)
        assert old.execute("SET", KEY, VALUE) is True
        (replica,) = cluster.replicas_of(old)
        wait_for(
            "the key on the replica",
            lambda: read_on_replica(replica, KEY) == VALUE,
            REPLICATED_WITHIN_S,
        )

        cluster.kill(old)
        new = cluster.wait_for_new_primary(KEY, old, timeout_s=FAILOVER_WITHIN_S)

        assert new is replica
        assert cluster.primary_for_key(KEY) is new
        assert new.execute("GET", KEY) == VALUE
