"""Migrations: applied in order, once, under a lock, and never silently changed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from app.migrate import MigrationError, migrate
from gridlens.sqlfiles import migrations


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
