"""A whole stack of its own for a benchmark: ``gridlens up`` on embedded servers.

The stack runs in a temporary data dir, on a free port, with its own embedded
PostgreSQL and Redis (``DATABASE_URL``, ``REDIS_URL`` and every ``GRIDLENS_*``
variable of the caller are dropped, so the machine's own servers are never
touched). Leaving the block, by its end, an error, Ctrl-C or SIGTERM, stops
every process the stack started and removes the data dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from app.embedded import free_port

API_KEY = "bench-stack-key-0123456789abcdef"
READY_WITHIN_S = 120.0  # first start: initdb, migrations, then the API
STOP_WITHIN_S = 90.0  # the supervisor's grace for its children, then the servers
KIB = 1024
MB = 1024 * 1024


@dataclass(frozen=True)
class Stack:
    data_dir: Path
    port: int
    consumers: int
    supervisor: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_urls(self) -> list[str]:
        """/metrics of the API, then of each consumer (served on the API's port + n)."""
        ports = [self.port] + [self.port + n for n in range(1, self.consumers + 1)]
        return [f"http://127.0.0.1:{port}/metrics" for port in ports]

    @property
    def env(self) -> dict[str, str]:
        """The environment of a client command (``gridlens emulate``) for this stack."""
        return {
            **_clean_environ(),
            "GRIDLENS_DATA_DIR": str(self.data_dir),
            "GRIDLENS_PORT": str(self.port),
            "GRIDLENS_API_KEY": API_KEY,
        }

    @property
    def postgres_url(self) -> str:
        return f"postgresql://postgres@/gridlens?host={self.data_dir / 'postgres'}"

    @property
    def redis_url(self) -> str:
        conf = (self.data_dir / "redis" / "redis.conf").read_text().split()
        port = conf[conf.index("port") + 1]
        password = (self.data_dir / "redis" / "password").read_text().strip()
        return f"redis://:{password}@127.0.0.1:{port}/0"

    def processes(self) -> dict[str, list[int]]:
        """The stack's live processes by role: supervisor, api, consumer-n, redis, postgres."""
        roles: dict[str, list[int]] = {"supervisor": [self.supervisor.pid]}
        for pid in _children(self.supervisor.pid):
            command = _cmdline(pid)
            if "-m app api" in command:
                roles.setdefault("api", []).append(pid)
            elif "-m app consume" in command:
                port = _environ(pid).get("GRIDLENS_METRICS_PORT", "?")
                number = int(port) - self.port if port.isdigit() else "?"
                roles.setdefault(f"consumer-{number}", []).append(pid)
        redis_pid = _pid_from(self.data_dir / "redis" / "redis.pid")
        if redis_pid is not None:
            roles["redis"] = [redis_pid]
        postmaster = _pid_from(self.data_dir / "postgres" / "postmaster.pid")
        if postmaster is not None:
            roles["postgres"] = [postmaster, *_children(postmaster)]
        return roles


@contextlib.contextmanager
def running_stack(consumers: int = 2, name: str = "bench") -> Iterator[Stack]:
    """A ready stack, stopped with everything it started when the block is left."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"gridlens-{name}-"))
    port = _free_port_run(consumers + 1)
    log_path = data_dir / "stack.log"
    env = {
        **_clean_environ(),
        "GRIDLENS_DATA_DIR": str(data_dir),
        "GRIDLENS_PORT": str(port),
        "GRIDLENS_API_KEY": API_KEY,
        "GRIDLENS_CONSUMERS": str(consumers),
    }
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    stack: Stack | None = None
    try:
        with log_path.open("ab") as log:
            supervisor = subprocess.Popen(
                [sys.executable, "-m", "app", "up"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C reaches the benchmark, which stops it
            )
        stack = Stack(data_dir, port, consumers, supervisor, log_path)
        _wait_ready(stack)
        yield stack
    finally:
        try:
            if stack is not None:
                stop_stack(stack)
        finally:
            signal.signal(signal.SIGTERM, previous)
            _keep_logs(data_dir, name)
            shutil.rmtree(data_dir, ignore_errors=True)


def stop_stack(stack: Stack) -> None:
    """SIGTERM to the supervisor, which stops its children and then the servers;
    whatever is still alive after STOP_WITHIN_S is killed."""
    leftovers = {pid for pids in stack.processes().values() for pid in pids}
    if stack.supervisor.poll() is None:
        stack.supervisor.send_signal(signal.SIGTERM)
    try:
        stack.supervisor.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        print(f"bench: the stack did not stop within {STOP_WITHIN_S:.0f} s; killing it")
        stack.supervisor.kill()
        stack.supervisor.wait()
    deadline = time.monotonic() + 10
    while (alive := {pid for pid in leftovers if _alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _keep_logs(data_dir: Path, name: str) -> None:
    """The run's logs outlive its data dir, for a look afterwards (replaced by the next run)."""
    kept = Path(tempfile.gettempdir()) / f"gridlens-{name}-logs"
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir()
    servers = {
        "redis.log": data_dir / "redis" / "redis.log",
        "postgres.log": data_dir / "postgres" / "log",
    }
    for name, log in {**{log.name: log for log in data_dir.glob("*.log")}, **servers}.items():
        with contextlib.suppress(OSError):
            shutil.copy(log, kept / name)
    print(f"bench: the stack's logs are kept in {kept}")


def rss_mb(pid: int) -> float:
    """The process's resident set size now (VmRSS), in MiB; 0 if it has exited."""
    return _status_kib(pid, "VmRSS") * KIB / MB


def private_mb(pid: int) -> float:
    """The process's resident anonymous memory (RssAnon: heap and stacks, no shared
    or file pages), in MiB; 0 if it has exited."""
    return _status_kib(pid, "RssAnon") * KIB / MB


def pss_mb(pid: int) -> float:
    """The process's proportional set size (shared pages divided among their sharers), in
    MiB: summed over processes that share memory, it counts that memory once."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0.0
    kib = next((int(line.split()[1]) for line in lines if line.startswith("Pss:")), 0)
    return kib * KIB / MB


def tail(path: Path, characters: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-characters:]
    except OSError:
        return ""


def _status_kib(pid: int, field: str) -> int:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith(f"{field}:")), 0)


def _wait_ready(stack: Stack) -> None:
    """Until the API is ready and every process serves its /metrics."""
    deadline = time.monotonic() + READY_WITHIN_S
    waiting_for = [f"{stack.base}/readyz", *stack.metrics_urls]
    while waiting_for and time.monotonic() < deadline:
        if stack.supervisor.poll() is not None:
            raise RuntimeError(f"the stack exited at start-up:\n{tail(stack.log_path)}")
        if _answers_200(waiting_for[0]):
            waiting_for.pop(0)
        else:
            time.sleep(0.2)
    if waiting_for:
        raise RuntimeError(f"{waiting_for[0]} did not answer within {READY_WITHIN_S:.0f} s")


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that clean up


def _clean_environ() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "REDIS_URL") and not name.startswith("GRIDLENS_")
    }


def _free_port_run(count: int) -> int:
    """A free port p such that p + 1 … p + count - 1 are free too (consumers' metrics)."""
    for _ in range(100):
        port = free_port()
        if port + count <= 65_535 and all(_port_free(port + n) for n in range(1, count)):
            return port
    raise RuntimeError("no run of free ports found")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _children(pid: int) -> list[int]:
    try:
        return [
            int(child)
            for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()
        ]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw if item)
    return {name: value for name, _, value in pairs}


def _pid_from(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() and _alive(int(first)) else None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
