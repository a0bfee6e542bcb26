"""A PostgreSQL primary killed mid-ingest, its synchronous standby promoted.

A primary and a synchronous streaming standby (tests/ha_postgres.py), migrated through the
multi-host URL GridLens is given (``host1,host2 … target_session_attrs=read-write``), the
API and two consumers on it, the suite's Redis for the queue. A 25,000-meter publish runs
while a client polls the status endpoint; once 5,000 of its reads are stored the primary
and all its backends are killed with SIGKILL, and the standby is promoted a moment later,
as Patroni would. Afterwards:

* every read the publish reported is in the new primary exactly once, none dead-lettered;
* status answered 503 while there was no primary, 200 after, never anything else;
* the same processes ingest another interval;
* the time from the kill to the first insert on the new primary is printed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from app.migrate import migrate
from gridlens.connections import CHECK_TIMEOUT_S
from gridlens.keys import Keys
from tests.conftest import Servers
from tests.failover import (
    Publish,
    check_every_read_once,
    check_going_on,
    gridlens,
    report_resumed,
    wait_for_rows,
    wait_until_part_way,
)
from tests.ha_postgres import postgres_ha_pair
from tests.test_stack_faults import StatusPoller

pytestmark = pytest.mark.failover

# Between the kill and the promotion: longer than the API waits for a connection (3 s),
# so that status calls in the gap find no primary and answer 503.
NO_PRIMARY_S = 5.0


def statuses(poller: StatusPoller, start: float, end: float) -> set[int | None]:
    """The statuses of the calls asked between ``start`` and ``end`` (time.monotonic)."""
    return {
        status
        for asked, (status, _body) in zip(poller.asked_at, poller.answers, strict=True)
        if start <= asked < end
    }


@pytest.fixture
def redis_keys_deleted(servers: Servers, namespace: str) -> Iterator[None]:
    """What GridLens wrote under the test's namespace is deleted afterwards."""
    yield
    client: Any = redis.Redis.from_url(servers.redis_url)
    try:
        keys = list(client.scan_iter(match="{" + namespace + "}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def test_a_postgres_failover_mid_ingest_loses_and_doubles_no_read(
    servers: Servers, namespace: str, tenant: str, tmp_path: Path, redis_keys_deleted: None
) -> None:
    with postgres_ha_pair(tmp_path / "postgres") as pair:
        database_url = pair.create_database("gridlens")
        asyncio.run(migrate(database_url))  # through the multi-host URL
        with gridlens(database_url, servers.redis_url, namespace, tmp_path) as stack:
            with (
                StatusPoller(stack.base, tenant) as poller,
                Publish(stack.base, tenant) as running,
            ):
                wait_until_part_way(pair.primary_url("gridlens"), tenant)
                killed_at = datetime.now(UTC)
                pair.kill_primary()
                killed = time.monotonic()  # calls asked before may still have been served
                time.sleep(NO_PRIMARY_S)
                promoted, promoted_at = time.monotonic(), datetime.now(UTC)
                pair.promote_standby()
                answer = running.result()
                new_primary = pair.standby_url("gridlens")
                wait_for_rows(new_primary, tenant, answer["reads"])
                settled = time.monotonic()
                time.sleep(1.0)  # a few status answers after the settle
            check_every_read_once(stack, new_primary, tenant, answer)
            report_resumed(
                "PostgreSQL: kill -9 of the primary to the first insert on the promoted standby",
                new_primary,
                tenant,
                killed_at,
            )
            report_resumed(
                "PostgreSQL: the promotion to the first insert on the new primary",
                new_primary,
                tenant,
                promoted_at,
            )
            # While no server accepted writes, status said so with 503 (a call asked less than
            # the API's wait for a connection before the promotion may be served after it);
            # once the standby was promoted it answered 200 again; never a 500 or no answer.
            assert statuses(poller, killed, promoted - CHECK_TIMEOUT_S) == {503}
            assert statuses(poller, settled, float("inf")) == {200}
            assert statuses(poller, 0, float("inf")) <= {200, 503}

            check_going_on(stack, new_primary, tenant, lambda: dead_letters(servers, namespace))


def dead_letters(servers: Servers, namespace: str) -> int:
    client: Any = redis.Redis.from_url(servers.redis_url)
    with client:
        return int(client.xlen(Keys(namespace).dead_letters))
