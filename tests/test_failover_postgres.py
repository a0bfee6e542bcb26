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
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from app.migrate import migrate
from gridlens.keys import Keys
from tests.conftest import Servers
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
from tests.ha_postgres import postgres_ha_pair
from tests.http import request

pytestmark = pytest.mark.failover

# Between the kill and the promotion: longer than the API waits for a connection (3 s),
# so that status calls in the gap find no primary and answer 503.
NO_PRIMARY_S = 5.0
POLL_S = 0.2


class StatusPoller:
    """GET /api/ami/scale/status every POLL_S in a thread: (when, status) of each answer."""

    def __init__(self, base: str, tenant: str) -> None:
        self.url = f"{base}/api/ami/scale/status?tenantId={tenant}"
        self.answers: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="status-poller")

    def __enter__(self) -> StatusPoller:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            asked = time.monotonic()
            status: int | None
            try:
                status = request("GET", self.url)[0]
            except OSError:
                status = None
            self.answers.append((asked, status))

    def statuses(self, start: float, end: float = float("inf")) -> set[int | None]:
        return {status for asked, status in self.answers if start <= asked < end}


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
                wait_for(
                    f"{KILL_AT_ROWS} reads stored",
                    lambda: stored_reads(pair.primary_url("gridlens"), tenant)[0] >= KILL_AT_ROWS,
                    60,
                )
                killed_at, killed = datetime.now(UTC), time.monotonic()
                pair.kill_primary()
                time.sleep(NO_PRIMARY_S)
                promoted, promoted_at = time.monotonic(), datetime.now(UTC)
                pair.promote_standby()
                answer = running.result()
                new_primary = pair.standby_url("gridlens")
                wait_for_rows(new_primary, tenant, answer["reads"])
                settled = time.monotonic()
                time.sleep(1.0)  # a few status answers after the settle
            assert answer["reads"] == METERS

            resumed_at = first_insert_after(new_primary, tenant, killed_at)
            assert resumed_at is not None
            report(
                "PostgreSQL: kill -9 of the primary to the first insert on the promoted standby",
                (resumed_at - killed_at).total_seconds(),
            )
            report(
                "PostgreSQL: the promotion to the first insert on the new primary",
                (resumed_at - promoted_at).total_seconds(),
            )
            # While no server accepted writes, status said so with 503; once the standby was
            # promoted it answered 200 again; never a 500 or no answer.
            assert 503 in poller.statuses(killed + 0.5, promoted)
            assert poller.statuses(settled) == {200}
            assert poller.statuses(0) <= {200, 503}

            later = READ_AT + timedelta(hours=1)
            with Publish(stack.base, tenant, meters=AFTER_METERS, read_at=later) as after:
                assert after.result()["reads"] == AFTER_METERS
            wait_for_rows(new_primary, tenant, AFTER_METERS, later)

            assert stored_reads(new_primary, tenant) == (METERS, METERS)
            client: Any = redis.Redis.from_url(servers.redis_url)
            with client:
                assert client.xlen(Keys(namespace).dead_letters) == 0
            assert stack.all_running(), "a GridLens process stopped"
