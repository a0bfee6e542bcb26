"""One BullMQ-Python worker process for ``bench consume``: the queue's jobs into PostgreSQL.

Started by bench/consume.py with ``python -m bench.bullmq_py_worker``. Each job's
data is the decoded stream entry; the processor validates it with GridLens's
own decoder and inserts it with GridLens's own statement (consumer.ingest), so
the comparison is of the queue, not of the insert. Prints ``ready`` once its
connections are up; SIGTERM closes it.

Environment: DATABASE_URL, REDIS_URL, BENCH_QUEUE (queue name), BENCH_CONCURRENCY.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from app.supervisor import die_with_supervisor
from consumer.ingest import insert_batch
from gridlens.connections import postgres_pool
from gridlens.entry import decode

INSERT_TIMEOUT_S = 10.0  # as GRIDLENS_INSERT_TIMEOUT_S


def processor(pool: AsyncConnectionPool[Any]) -> Any:
    async def process(job: Any, token: str) -> int:
        return await insert_batch(pool, decode(orjson.dumps(job.data)))

    return process


async def run(database_url: str, redis_url: str, queue: str, concurrency: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bullmq: Any = importlib.import_module("bullmq")  # untyped: no py.typed marker
    pool = postgres_pool(
        database_url,
        min_size=concurrency,  # as GridLens's consumer: connections opened at start
        max_size=concurrency,
        statement_timeout_s=INSERT_TIMEOUT_S,
        name="bench-bullmq-py",
        autocommit=True,  # as GridLens's consumer: one statement per job, no BEGIN/COMMIT
    )
    await pool.open(wait=True)
    worker = bullmq.Worker(
        queue, processor(pool), {"connection": redis_url, "concurrency": concurrency}
    )
    try:
        await worker.client.ping()
        print("ready", flush=True)
        await stop.wait()
    finally:
        await worker.close()
        await pool.close()


def main() -> None:
    die_with_supervisor()
    asyncio.run(
        run(
            os.environ["DATABASE_URL"],
            os.environ["REDIS_URL"],
            os.environ["BENCH_QUEUE"],
            int(os.environ.get("BENCH_CONCURRENCY", "8")),
        )
    )


if __name__ == "__main__":
    main()
