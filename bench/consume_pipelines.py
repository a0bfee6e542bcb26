"""The three queue-to-PostgreSQL pipelines that ``bench consume`` measures, behind one interface.

GridLens (``gridlens consume`` processes reading a Redis Stream), BullMQ's Python
port (bench/bullmq_py_worker.py) and BullMQ on Node.js with node-postgres
(bench/bullmq_node/). Each starts N consumer processes, enqueues the same jobs all
at once, says when its queue is drained (every job committed, then acknowledged)
and, on close, stops every process it started and deletes its Redis keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import orjson
import redis.asyncio as aioredis
from psycopg.conninfo import conninfo_to_dict
from redis.exceptions import ResponseError

from app.embedded import ServiceUrls
from app.supervisor import SUPERVISOR_PID_ENV
from gridlens.entry import ENTRY_FIELD
from gridlens.keys import CONSUMER_GROUP, Keys
from gridlens.sqlfiles import query

CONCURRENCY = 8  # in-flight jobs per consumer process, in every pipeline
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0  # SIGTERM, then SIGKILL after this
POLL_S = 0.05
NODE_DIR = Path(__file__).resolve().parent / "bullmq_node"
BULL_PREFIX = "bull"
# The $n of node-postgres, in the order the brief gives: insert_reads's %(name)s placeholders.
NODE_PARAMS = (
    "tenant_id",
    "meter_ids",
    "feeder_id",
    "read_at",
    "interval_minutes",
    "kwh",
    "voltage",
    "meter_set",
)

Process = asyncio.subprocess.Process
PIPE = asyncio.subprocess.PIPE
DEVNULL = asyncio.subprocess.DEVNULL


@dataclass(frozen=True)
class Enqueued:
    started_at: float  # epoch seconds of the first enqueue
    producer_cpu_s: float


class Pipeline:
    """N consumer processes and a producer, on a Redis namespace of their own."""

    label: ClassVar[str]

    def __init__(self, urls: ServiceUrls, entries: list[bytes], workdir: Path) -> None:
        self.urls = urls
        self.entries = entries
        self.workdir = workdir
        self.redis = aioredis.Redis.from_url(urls.redis_url)
        self.consumers: list[Process] = []
        self.helpers: list[Process] = []  # processes that are not consumers (a producer)

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this pipeline cannot run on this machine, or None."""
        return None

    async def start(self, count: int) -> None:
        """Start ``count`` consumer processes and return once they are ready."""
        raise NotImplementedError

    async def enqueue(self, count: int | None = None) -> Enqueued:
        """Enqueue the first ``count`` entries (every one by default) at once."""
        raise NotImplementedError

    def enqueue_count(self, count: int | None) -> int:
        """How many entries ``enqueue(count)`` takes."""
        if count is None:
            return len(self.entries)
        if not 0 < count <= len(self.entries):
            raise ValueError(f"enqueue 1 to {len(self.entries)} entries, not {count}")
        return count

    async def drained(self) -> bool:
        """True when every job has been committed and acknowledged."""
        raise NotImplementedError

    async def failures(self) -> str | None:
        """What went wrong with jobs (dead letters, failed jobs), or None."""
        return None

    def key_pattern(self) -> str:
        raise NotImplementedError

    async def _release(self) -> None:
        """Close in-process clients other than ``self.redis``."""

    def check_alive(self) -> None:
        """Raise if a consumer exited (or a helper failed) while it should be working."""
        for process in self.consumers:
            if process.returncode is not None:
                raise RuntimeError(
                    f"{self.label}: a consumer exited with code {process.returncode}"
                )
        for process in self.helpers:
            if process.returncode:
                raise RuntimeError(f"{self.label}: a helper exited with code {process.returncode}")

    async def close(self) -> None:
        try:
            await stop_all([*self.consumers, *self.helpers])
        finally:
            with contextlib.suppress(Exception):
                await self._release()
            keys = [key async for key in self.redis.scan_iter(match=self.key_pattern())]
            if keys:
                await self.redis.delete(*keys)
            await self.redis.aclose()


async def spawn(
    args: list[str], env: dict[str, str], *, cwd: Path | None = None, stdout: int = PIPE
) -> Process:
    """A child process, stderr shared with this one.

    Python children get SIGTERM if this process dies (GRIDLENS_SUPERVISOR_PID); Node
    children exit when their stdin, a pipe from this process, closes.
    """
    return await asyncio.create_subprocess_exec(
        *args,
        env={**os.environ, **env, SUPERVISOR_PID_ENV: str(os.getpid())},
        cwd=cwd,
        stdin=PIPE,
        stdout=stdout,
    )


async def await_ready(process: Process, what: str) -> None:
    """Wait for the ``ready`` line a helper prints once connected."""
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT_S)
    except TimeoutError:
        raise TimeoutError(f"{what} was not ready within {READY_TIMEOUT_S:.0f} s") from None
    if line.strip() != b"ready":
        await process.wait()
        raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready")


async def wait_until(
    condition: Callable[[], Awaitable[bool]], pipeline: Pipeline, what: str
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not await condition():
        pipeline.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{pipeline.label}: {what} within {READY_TIMEOUT_S:.0f} s")
        await asyncio.sleep(POLL_S)


async def stop_all(processes: list[Process]) -> None:
    """SIGTERM to each process still running, then SIGKILL to those that outlast the grace."""
    for process in processes:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


class GridLens(Pipeline):
    label = "GridLens"

    def __init__(self, urls: ServiceUrls, entries: list[bytes], workdir: Path) -> None:
        super().__init__(urls, entries, workdir)
        self.keys = Keys(f"bench-consume-{uuid.uuid4().hex[:10]}")

    async def start(self, count: int) -> None:
        env = {
            "DATABASE_URL": self.urls.database_url,
            "REDIS_URL": self.urls.redis_url,
            "GRIDLENS_REDIS_NAMESPACE": self.keys.namespace,
            "GRIDLENS_LOG_LEVEL": "WARNING",
            "GRIDLENS_DATA_DIR": str(self.workdir),
            "GRIDLENS_CONSUMER_CONCURRENCY": str(CONCURRENCY),
        }
        for _ in range(count):
            self.consumers.append(
                await spawn([sys.executable, "-m", "app", "consume"], env, stdout=DEVNULL)
            )

        async def joined() -> bool:
            return await self._group_consumers() >= count

        await wait_until(joined, self, f"{count} consumers did not join group {CONSUMER_GROUP!r}")

    async def _group_consumers(self) -> int:
        try:
            groups = await self.redis.xinfo_groups(self.keys.stream)
        except ResponseError:
            return 0  # no stream yet
        for group in groups:
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == CONSUMER_GROUP:
                return int(group["consumers"])
        return 0

    async def enqueue(self, count: int | None = None) -> Enqueued:
        entries = self.entries[: self.enqueue_count(count)]
        started, cpu = time.time(), time.thread_time()
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in entries:
                pipe.xadd(self.keys.stream, {ENTRY_FIELD: entry})
            await pipe.execute()
        return Enqueued(started, time.thread_time() - cpu)

    async def enqueue_paced(self, jobs_per_second: float) -> Enqueued:
        """One XADD every 1/jobs_per_second s, on an absolute schedule."""
        started, cpu = time.time(), time.thread_time()
        for index, entry in enumerate(self.entries):
            delay = started + index / jobs_per_second - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.redis.xadd(self.keys.stream, {ENTRY_FIELD: entry})
        return Enqueued(started, time.thread_time() - cpu)

    async def drained(self) -> bool:
        # Entries are deleted (XACK + XDEL) only after their commit.
        return int(await self.redis.xlen(self.keys.stream)) == 0

    async def failures(self) -> str | None:
        dead = int(await self.redis.xlen(self.keys.dead_letters))
        return f"{dead} entries dead-lettered" if dead else None

    def key_pattern(self) -> str:
        return "{" + self.keys.namespace + "}:*"


class BullMQ(Pipeline):
    """What both BullMQ ports share: the queue's keys and when it is drained."""

    def __init__(self, urls: ServiceUrls, entries: list[bytes], workdir: Path) -> None:
        super().__init__(urls, entries, workdir)
        self.queue_name = f"bench-consume-{uuid.uuid4().hex[:10]}"

    def _key(self, name: str) -> str:
        return f"{BULL_PREFIX}:{self.queue_name}:{name}"

    async def drained(self) -> bool:
        # removeOnComplete: a job leaves "active" (and is deleted) after its processor returned.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.llen(self._key("wait"))
            pipe.llen(self._key("active"))
            waiting, active = await pipe.execute()
        return int(waiting) + int(active) == 0

    async def failures(self) -> str | None:
        failed = int(await self.redis.zcard(self._key("failed")))
        return f"{failed} jobs failed" if failed else None

    def key_pattern(self) -> str:
        return f"{BULL_PREFIX}:{self.queue_name}:*"


class BullMQPython(BullMQ):
    label = "BullMQ-Python"

    def __init__(self, urls: ServiceUrls, entries: list[bytes], workdir: Path) -> None:
        super().__init__(urls, entries, workdir)
        self.jobs = [
            {"name": "batch", "data": orjson.loads(entry), "opts": {"removeOnComplete": True}}
            for entry in entries
        ]
        self.queue: Any = None

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            importlib.import_module("bullmq")
        except ImportError:
            return "PyPI bullmq is not installed (make .venv/.installed-bench)"
        return None

    async def start(self, count: int) -> None:
        env = {
            "DATABASE_URL": self.urls.database_url,
            "REDIS_URL": self.urls.redis_url,
            "BENCH_QUEUE": self.queue_name,
            "BENCH_CONCURRENCY": str(CONCURRENCY),
        }
        for _ in range(count):
            self.consumers.append(
                await spawn([sys.executable, "-m", "bench.bullmq_py_worker"], env)
            )
        await asyncio.gather(
            *(await_ready(worker, "a BullMQ-Python worker") for worker in self.consumers)
        )
        bullmq: Any = importlib.import_module("bullmq")
        self.queue = bullmq.Queue(
            self.queue_name, {"connection": self.urls.redis_url, "prefix": BULL_PREFIX}
        )
        await self.queue.getJobCounts()  # connected, before the clock starts

    async def enqueue(self, count: int | None = None) -> Enqueued:
        jobs = self.jobs[: self.enqueue_count(count)]
        started, cpu = time.time(), time.thread_time()
        await self.queue.addBulk(jobs)
        return Enqueued(started, time.thread_time() - cpu)

    async def _release(self) -> None:
        if self.queue is not None:
            await self.queue.close()


class BullMQNode(BullMQ):
    label = "BullMQ-Node"

    @classmethod
    def unavailable(cls) -> str | None:
        if shutil.which("node") is None:
            return "node is not on PATH"
        if not (NODE_DIR / "node_modules" / "bullmq").is_dir():
            return "bench/bullmq_node/node_modules is missing (npm install there)"
        return None

    def _config(self) -> str:
        jobs_file = self.workdir / f"{self.queue_name}.jsonl"
        jobs_file.write_bytes(b"".join(entry + b"\n" for entry in self.entries))
        return json.dumps(
            {
                "queue": self.queue_name,
                "prefix": BULL_PREFIX,
                "concurrency": CONCURRENCY,
                "redis": ioredis_options(self.urls.redis_url),
                "pg": pg_options(self.urls.database_url),
                "sql": node_sql(),
                "jobsFile": str(jobs_file),
            }
        )

    async def start(self, count: int) -> None:
        env = {"BENCH_CONFIG": self._config()}
        for _ in range(count):
            self.consumers.append(await spawn(["node", "worker.mjs"], env, cwd=NODE_DIR))
        self.helpers.append(await spawn(["node", "producer.mjs"], env, cwd=NODE_DIR))
        await asyncio.gather(
            *(await_ready(worker, "a BullMQ-Node worker") for worker in self.consumers),
            await_ready(self.helpers[0], "the BullMQ-Node producer"),
        )

    async def enqueue(self, count: int | None = None) -> Enqueued:
        producer = self.helpers[0]
        assert producer.stdin is not None and producer.stdout is not None
        producer.stdin.write(b"%d\n" % self.enqueue_count(count))
        await producer.stdin.drain()
        line = await asyncio.wait_for(producer.stdout.readline(), READY_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"{self.label}: the producer exited without enqueueing")
        result = json.loads(line)
        return Enqueued(float(result["startedAtMs"]) / 1000, float(result["cpuSeconds"]))


def node_sql() -> str:
    """sql/queries.sql's insert_reads, word for word, with $1..$8 for node-postgres."""
    sql = query("insert_reads").decode()
    for number, name in enumerate(NODE_PARAMS, start=1):
        sql = sql.replace(f"%({name})s", f"${number}")
    if "%(" in sql:
        raise ValueError(f"insert_reads has a placeholder not in {NODE_PARAMS}: {sql}")
    return sql


def pg_options(database_url: str) -> dict[str, Any]:
    """node-postgres Pool options; a unix-socket URL (?host=/dir) gives host = the socket dir."""
    info = conninfo_to_dict(database_url)
    sslmode = info.get("sslmode")
    options: dict[str, Any] = {
        "host": info.get("host"),
        "port": int(str(info["port"])) if info.get("port") else None,
        "database": info.get("dbname"),
        "user": info.get("user"),
        "password": info.get("password") or None,
        "ssl": {"rejectUnauthorized": sslmode == "verify-full"}
        if sslmode in ("require", "verify-ca", "verify-full")
        else None,
    }
    return {key: value for key, value in options.items() if value is not None}


def ioredis_options(redis_url: str) -> dict[str, Any]:
    """ioredis options (host, port, password, db; path for unix://, tls for rediss://)."""
    parts = urlsplit(redis_url)
    params = {name: values[0] for name, values in parse_qs(parts.query).items()}
    password = unquote(parts.password) if parts.password else params.get("password")
    options: dict[str, Any]
    if parts.scheme == "unix":
        options = {"path": parts.path, "db": int(params.get("db", "0"))}
    else:
        options = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 6379,
            "db": int(parts.path.strip("/") or params.get("db", "0")),
        }
    if parts.username:
        options["username"] = unquote(parts.username)
    if password:
        options["password"] = password
    if parts.scheme == "rediss":
        options["tls"] = {}
    return options
