"""Apply the numbered migrations of sql/ once each, under an advisory lock."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import psycopg

from gridlens.errors import GridLensError
from gridlens.sqlfiles import Migration, migrations, query

log = logging.getLogger(__name__)


class MigrationError(GridLensError, RuntimeError):
    """The database's recorded migrations disagree with sql/migrations."""


async def migrate(database_url: str, directory: Path | None = None) -> list[str]:
    """Apply what is pending, all in one transaction; return the versions applied."""
    pending_files = migrations(directory)
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.transaction():
        await conn.execute(query("migrations_lock"))
        await conn.execute(query("migrations_table"))
        cursor = await conn.execute(query("migrations_applied"))
        applied = {version: checksum for version, checksum in await cursor.fetchall()}
        done: list[str] = []
        for migration in pending_files:
            if migration.version in applied:
                _check_unchanged(migration, applied[migration.version])
                continue
            started = time.monotonic()
            await conn.execute(migration.statements)
            await conn.execute(
                query("migrations_record"),
                {"version": migration.version, "checksum": migration.checksum},
            )
            log.info(
                "migration applied",
                extra={
                    "action": "migrate",
                    "migration": migration.name,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
            done.append(migration.version)
    return done


def _check_unchanged(migration: Migration, recorded_checksum: str) -> None:
    if migration.checksum != recorded_checksum:
        raise MigrationError(
            f"{migration.name} changed after it was applied; add a new migration instead"
        )
