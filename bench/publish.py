"""The 25,000-meter publish of SPEC §9 through a real API process.

Prints the wall time, the achieved reads/s, the fullest 1-second window of
stream entry ids (the hard cap is 2,500) and the CPU seconds the API process
spent. Targets: ≤ 10.5 s, fullest window ≤ 2,500, API CPU ≤ 1 s.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from app.api_client import wait_ready
from bench.procstat import cpu_seconds
from bench.servers import bench_services
from gridlens.entry import ENTRY_FIELD, decode
from gridlens.keys import Keys
from producer.pace import fullest_window

API_KEY = "bench-key-0123456789abcdef"
PORT = 5099
NAMESPACE = "gridlens-bench"
BODY = {
    "tenantId": "BENCH_TENANT",
    "intervalMinutes": 15,
    "batchSize": 500,
    "meterCount": 25_000,
    "feederCount": 25,
}


def fullest_second(entries: list[tuple[int, int]]) -> int:
    """The most reads in any window [t, t + 1000) ms of (entry id ms, reads), sorted by ms."""
    return fullest_window(entries, 1000)


async def measure(pid: int, redis_url: str) -> None:
    base = f"http://127.0.0.1:{PORT}"
    if not await wait_ready(base, within_s=30):
        raise SystemExit(f"bench publish: the API at {base} did not become ready")
    async with aiohttp.ClientSession() as session:
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        async with session.post(
            f"{base}/api/ami/publish-once",
            json=BODY,
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as response:
            result: Any = await response.json()
        wall = time.perf_counter() - started
        cpu = cpu_seconds(pid) - cpu_before
    client = aioredis.Redis.from_url(redis_url)
    keys = Keys(NAMESPACE)
    stream: Any = await client.xrange(keys.stream)
    entries = [
        (int(entry_id.split(b"-")[0]), len(decode(fields[ENTRY_FIELD])))
        for entry_id, fields in stream
    ]
    await client.delete(*[key async for key in client.scan_iter(match="{" + NAMESPACE + "}:*")])
    await client.aclose()
    print(
        f"publish of {result['reads']:,} reads in {result['jobs']} jobs: "
        f"wall {wall:.2f} s (target ≤ 10.5), {result['reads'] / wall:,.0f} reads/s achieved"
    )
    print(
        f"fullest 1-second window of entry ids: {fullest_second(entries):,} reads (hard cap 2,500)"
    )
    print(f"API process CPU: {cpu:.2f} s (target ≤ 1)")


def main() -> None:
    with bench_services() as urls, tempfile.TemporaryDirectory() as data_dir:
        env = {
            **os.environ,
            "DATABASE_URL": urls.database_url,
            "REDIS_URL": urls.redis_url,
            "GRIDLENS_API_KEY": API_KEY,
            "GRIDLENS_PORT": str(PORT),
            "GRIDLENS_REDIS_NAMESPACE": NAMESPACE,
            "GRIDLENS_DATA_DIR": data_dir,
            "GRIDLENS_LOG_LEVEL": "WARNING",
        }
        api = subprocess.Popen([sys.executable, "-m", "app", "api"], env=env)
        try:
            asyncio.run(measure(api.pid, urls.redis_url))
        finally:
            api.terminate()
            api.wait(30)


if __name__ == "__main__":
    main()
