"""Servers for a benchmark: DATABASE_URL / REDIS_URL, or embedded ones in a temp dir."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from app.embedded import ServiceUrls, running_services
from app.migrate import migrate


@contextlib.contextmanager
def bench_services() -> Iterator[ServiceUrls]:
    """Servers with a fresh, migrated database that is dropped afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix="gridlens-bench-") as root,
        running_services(
            Path(root), os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
        ) as urls,
    ):
        name = f"gridlens_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(urls.database_url, autocommit=True) as conn:
            conn.execute(b"CREATE DATABASE " + name.encode())
        database_url = urlunsplit(urlsplit(urls.database_url)._replace(path=f"/{name}"))
        asyncio.run(migrate(database_url))
        try:
            yield ServiceUrls(database_url=database_url, redis_url=urls.redis_url)
        finally:
            with psycopg.connect(urls.database_url, autocommit=True) as conn:
                conn.execute(b"DROP DATABASE " + name.encode() + b" WITH (FORCE)")
