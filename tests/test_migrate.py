"""Migrations: applied in order, once, under a lock, and never silently changed."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from app.migrate import MigrationError, migrate
from gridlens.sqlfiles import migrations, query


async def test_migrations_apply_once_and_are_recorded(fresh_database_url: str) -> None:
    expected = [migration.version for migration in migrations()]
    assert await migrate(fresh_database_url) == expected
    assert await migrate(fresh_database_url) == []
    async with await psycopg.AsyncConnection.connect(fresh_database_url) as conn:
        cursor = await conn.execute(b"SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in await cursor.fetchall()] == expected
        cursor = await conn.execute(
            b"SELECT to_regclass('public.meter_reads_electric'), to_regclass('public.ami_events')"
        )
        assert await cursor.fetchone() == ("meter_reads_electric", "ami_events")


async def test_concurrent_starts_apply_each_migration_once(fresh_database_url: str) -> None:
    results = await asyncio.gather(*(migrate(fresh_database_url) for _ in range(4)))
    applied = [version for result in results for version in result]
    assert sorted(applied) == [migration.version for migration in migrations()]


async def test_a_changed_migration_is_refused(fresh_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (a int);")
    assert await migrate(fresh_database_url, tmp_path) == ["0001"]
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (a bigint);")
    with pytest.raises(MigrationError, match=r"0001_t\.sql changed after it was applied"):
        await migrate(fresh_database_url, tmp_path)


async def test_a_failing_migration_leaves_nothing_behind(
    fresh_database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE ok (a int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE bad (a nonsense_type);")
    with pytest.raises(psycopg.errors.UndefinedObject):
        await migrate(fresh_database_url, tmp_path)
    async with await psycopg.AsyncConnection.connect(fresh_database_url) as conn:
        cursor = await conn.execute(b"SELECT to_regclass('public.ok')")
        assert await cursor.fetchone() == (None,)


async def test_the_received_channel_keeps_the_rows_and_totals_stored_before_it(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """0011 adds kwh_received (0: existing rows mean delivered) and puts the kWh of rows
    stored before it into the status rollups, so status agrees with the table."""
    for migration in migrations():
        if migration.version < "0011":
            (tmp_path / migration.name).write_bytes(migration.statements)
    await migrate(fresh_database_url, tmp_path)
    async with await psycopg.AsyncConnection.connect(fresh_database_url) as conn:
        await conn.execute(  # what the previous consumer stored, with its rollup rows
            b"INSERT INTO meter_reads_electric (tenant_id, meter_id, feeder_id, read_at,"
            b" interval_minutes, kwh, voltage) SELECT 'OLD', 'm' || n, 'FEEDER_1',"
            b" '2026-03-01T00:15Z', 15, n / 10.0, 120 FROM generate_series(1, 20) AS n"
        )
        await conn.execute(
            b"INSERT INTO meter_reads_rollup (tenant_id, read_at, feeder_id, meter_set, reads)"
            b" VALUES ('OLD', '2026-03-01T00:15Z', 'FEEDER_1', gen_random_uuid(), 20);"
            b" INSERT INTO tenant_meters SELECT tenant_id, meter_id, read_at"
            b" FROM meter_reads_electric"
        )
        await conn.commit()
    assert (await migrate(fresh_database_url))[0] == "0011"
    async with await psycopg.AsyncConnection.connect(fresh_database_url) as conn:
        params = {"tenant_id": "OLD"}
        rolled = await (await conn.execute(query("tenant_status"), params)).fetchone()
        scanned = await (await conn.execute(query("tenant_status_scan"), params)).fetchone()
        load = await (
            await conn.execute(b"SELECT kwh, kwh_received FROM kpi_feeder_load")
        ).fetchall()
    assert rolled is not None and rolled[:6] == scanned  # the last: late reads' lateness
    assert rolled[1] == 20 and rolled[3:6] == (Decimal("21"), 0, 0)
    assert len(load) == 1 and load[0] == (pytest.approx(21.0), 0.0)
