"""Smoke test of tests/ha_postgres.py: a commit survives the primary's death, and after the
standby's promotion the same multi-host URL reaches it and writes again."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from tests.ha_postgres import postgres_ha_pair


def test_failover_keeps_the_commit_and_takes_writes(tmp_path: Path) -> None:
    started = time.monotonic()
    with postgres_ha_pair(tmp_path) as pair:
        with psycopg.connect(pair.url(), autocommit=True) as conn:
            assert conn.info.port == pair.primary.port
            # remote_apply: the commit returns once the standby has replayed it (visible).
            conn.execute("SET synchronous_commit = remote_apply")
            conn.execute("CREATE TABLE reads (id int PRIMARY KEY, note text NOT NULL)")
            conn.execute("INSERT INTO reads VALUES (1, 'before the failover')")
        with psycopg.connect(pair.standby_url(), autocommit=True) as standby:
            row = standby.execute("SELECT note FROM reads WHERE id = 1").fetchone()
            assert row == ("before the failover",)

        with psycopg.connect(pair.primary_url(), autocommit=True) as victim:
            pair.kill_primary()
            with pytest.raises(psycopg.OperationalError) as lost:
                victim.execute("SELECT 1")
        print(f"\na client of the killed primary sees: {lost.value!r}")
        # As from a dead host: no backend lived to say "unexpected postmaster exit".
        assert not isinstance(lost.value, psycopg.errors.AdminShutdown)
        # Until the promotion no host accepts writes: the standby is read-only.
        with pytest.raises(psycopg.OperationalError, match="read-only"):
            psycopg.connect(pair.url()).close()

        promotion_s = pair.promote_standby()
        print(f"promotion took {promotion_s:.2f} s")

        with psycopg.connect(pair.url(), autocommit=True) as conn:
            assert conn.info.port == pair.standby.port
            row = conn.execute("SELECT note FROM reads WHERE id = 1").fetchone()
            assert row == ("before the failover",)
            conn.execute("INSERT INTO reads VALUES (2, 'after the failover')")
            count = conn.execute("SELECT count(*) FROM reads").fetchone()
            assert count == (2,)
    print(f"pair up, failover and teardown took {time.monotonic() - started:.2f} s")
