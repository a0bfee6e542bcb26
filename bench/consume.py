"""Consumer throughput: GridLens against BullMQ (Python, Node.js), 1, 2 and 4 processes.

The queue is fed directly (no API, no rate cap): 400 jobs of 500 reads (a
25,000-meter, 25-feeder fleet over 8 intervals: 200,000 reads), enqueued at once,
inserted into the same table by the same statement, by consumer processes through
which 100 jobs per process went first (warm: connections open, statements prepared).
For each pipeline and number of consumer processes it prints end-to-end reads/s
(first enqueue to the queue drained: every job committed, then acknowledged;
polled every 5 ms, row count checked), client CPU s per 100,000 reads (consumer
processes; the producer's, the Redis server's and PostgreSQL's apart, and the
machine's idle share), peak RSS of the largest consumer process (VmHWM) and peak
Redis memory (INFO used_memory sampled every 10 ms: peak minus the baseline before
enqueueing), each from the median of 10 runs; and the throughput ratio that CPU
alone predicts, from what each pipeline and PostgreSQL cost the machine per read.
Then GridLens at the 2,500 reads/s cap (5 jobs of 500 reads a second for 10 s):
each consumer process's CPU as % of one core.

Targets: reads/s ≥ 1.1× the better BullMQ; ≤ 0.3 CPU s per 100,000 reads; less
Redis memory than BullMQ; < 5% of a core per consumer process at the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import redis.asyncio as aioredis
from psycopg.rows import TupleRow
from redis.exceptions import ResponseError

from app.embedded import ServiceUrls
from bench.consume_pipelines import CONCURRENCY, BullMQNode, BullMQPython, GridLens, Pipeline
from bench.procstat import (
    RedisUsage,
    cpu_seconds,
    machine_cpu,
    peak_rss_mb,
    postgres_cpu_seconds,
    postgres_cpu_since,
    reset_peak_rss,
)
from bench.servers import bench_services
from consumer.ingest import insert_reads
from gridlens.entry import decode, encode
from producer.batch import generate_batch
from producer.fleet import feeder_meters

METERS, FEEDERS, BATCH, INTERVALS = 25_000, 25, 500, 8  # 400 jobs, 200,000 reads
START = datetime(2026, 3, 2, tzinfo=UTC)
TENANT = "BENCH"
CONSUMER_COUNTS = (1, 2, 4)
REPEATS = 10  # rounds per consumer count: each pipeline starts 3 or 4 of them (runs: −11%/+7%)
PIPELINES: tuple[type[Pipeline], ...] = (GridLens, BullMQPython, BullMQNode)
SETTLE_S = 0.5  # after every consumer is ready, before the warm-up
WARMUP_JOBS_PER_PROCESS = 100  # untimed, through the same processes before each run
DRAIN_POLL_S = 0.005
ROWS_POLL_S = 1.0  # fallback: the table already holds every row
DRAIN_TIMEOUT_S = 180.0
AOF_REWRITE_TIMEOUT_S = 30.0
PACED_JOBS, PACED_JOBS_PER_S, PACED_CONSUMERS = 50, 5.0, (1, 2)  # 2,500 reads/s for 10 s
TARGET_SPEEDUP, TARGET_CPU_PER_100K, TARGET_PACED_CPU_PCT = 1.1, 0.3, 5.0


Database = psycopg.AsyncConnection[TupleRow]


@dataclass(frozen=True)
class Run:
    label: str
    consumers: int
    reads: int
    seconds: float
    consumer_cpu_s: float
    producer_cpu_s: float
    peak_rss_mb: float  # the largest consumer process
    redis_mb: float
    redis_cpu_s: float  # the Redis server's, for comparison: not client CPU
    postgres_cpu_s: float  # every PostgreSQL process on this machine
    idle_share: float  # of the machine's CPU time during the run

    @property
    def reads_per_s(self) -> float:
        return self.reads / self.seconds

    @property
    def cpu_per_100k(self) -> float:
        return self.consumer_cpu_s / self.reads * 100_000

    @property
    def producer_cpu_per_100k(self) -> float:
        return self.producer_cpu_s / self.reads * 100_000

    @property
    def redis_cpu_per_100k(self) -> float:
        return self.redis_cpu_s / self.reads * 100_000

    @property
    def postgres_cpu_per_100k(self) -> float:
        return self.postgres_cpu_s / self.reads * 100_000

    @property
    def own_cpu_per_100k(self) -> float:
        """What the pipeline itself costs the machine per 100,000 reads: its consumers, its
        producer and the Redis server (PostgreSQL's share is the statement's, not its own)."""
        return self.cpu_per_100k + self.producer_cpu_per_100k + self.redis_cpu_per_100k


def workload() -> list[bytes]:
    """Every job's stream entry, generated before any clock starts."""
    entries: list[bytes] = []
    for step in range(INTERVALS):
        read_at = START + timedelta(minutes=15 * (step + 1))
        for feeder in range(1, FEEDERS + 1):
            meters = feeder_meters(feeder, 1, METERS, FEEDERS)
            for first in range(0, len(meters), BATCH):
                batch = generate_batch(
                    publish_id="bench-consume",
                    tenant_id=TENANT,
                    feeder=feeder,
                    meter_numbers=meters[first : first + BATCH],
                    read_at=read_at,
                    interval_minutes=15,
                )
                entries.append(encode(batch))
    return entries


async def reset_table(db: Database) -> None:
    """Every run alike: the reads and their rollups emptied (each run's intervals are new
    to the table, as a new interval is), the fleet's meters still registered (as they are
    after its first interval); then a checkpoint so no run pays for the last one's writes."""
    await db.execute("TRUNCATE public.meter_reads_electric, public.meter_reads_rollup")
    with contextlib.suppress(psycopg.Error):
        await db.execute("CHECKPOINT")  # needs superuser or pg_checkpoint: best effort


async def register_fleet(db: Database, entries: list[bytes]) -> None:
    """Insert the workload's first interval once, untimed: the fleet's meters and meter
    sets registered (every later interval has the same meter sets).

    Otherwise the first timed run, whichever pipeline it is, would also register
    25,000 meters, which later runs (and a fleet past its first interval) do not.
    """
    for entry in entries[: len(entries) // INTERVALS]:
        await insert_reads(db, decode(entry))


async def settle_redis(redis_url: str) -> None:
    """Rewrite the append-only file now, so that no rewrite starts during a run.

    Every run appends ~5 MB; once the file passes 64 MB Redis rewrites it in the
    background, and while it does, what is written meanwhile is buffered in
    used_memory too, inflating that run's peak. Best effort: skipped without AOF.
    """
    client = aioredis.Redis.from_url(redis_url)
    try:
        if int((await client.info("persistence")).get("aof_enabled", 0)) != 1:
            return
        with contextlib.suppress(ResponseError):  # one already in progress
            await client.bgrewriteaof()
        deadline = time.monotonic() + AOF_REWRITE_TIMEOUT_S
        while time.monotonic() < deadline:
            info = await client.info("persistence")
            if not int(info["aof_rewrite_in_progress"]) and not int(info["aof_rewrite_scheduled"]):
                return
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def row_count(db: Database) -> int:
    cursor = await db.execute("SELECT count(*) FROM public.meter_reads_electric")
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def wait_drained(pipeline: Pipeline, db: Database, reads: int) -> float:
    """The time (epoch s) at which the queue was seen drained, or the table full."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    next_check = time.monotonic() + ROWS_POLL_S
    while not await pipeline.drained():
        pipeline.check_alive()
        now = time.monotonic()
        if now > deadline:
            failures = await pipeline.failures()
            raise TimeoutError(
                f"{pipeline.label}: not drained within {DRAIN_TIMEOUT_S:.0f} s "
                f"({await row_count(db):,} of {reads:,} rows; {failures or 'no failed jobs'})"
            )
        if now > next_check:
            next_check = now + ROWS_POLL_S
            if await row_count(db) >= reads:
                break
            if failures := await pipeline.failures():
                raise RuntimeError(f"{pipeline.label}: {failures}")
        await asyncio.sleep(DRAIN_POLL_S)
    return time.time()


async def verify_rows(pipeline: Pipeline, db: Database, reads: int) -> None:
    count = await row_count(db)
    if count != reads:
        failures = await pipeline.failures()
        raise RuntimeError(
            f"{pipeline.label}: queue drained with {count:,} rows in the table, expected "
            f"{reads:,} ({failures or 'no failed jobs'})"
        )


async def warm_up(pipeline: Pipeline, db: Database) -> None:
    """WARMUP_JOBS_PER_PROCESS jobs per consumer process through the pipeline's new
    processes, untimed.

    What a consumer does once in its life is not what it costs per read: its database
    connections opened (psycopg's pool grows to the in-flight limit), statements
    prepared, the backends' catalog caches filled, Node.js's code compiled. Timed from a
    cold start, a run of about a second took 6–8% longer than the same run through warm
    processes (GridLens and BullMQ-Python, six rounds each). Four processes warmed with 25
    jobs each still ran 4–5% slower, GridLens and BullMQ alike, than with 100 each.
    """
    count = min(len(pipeline.entries), WARMUP_JOBS_PER_PROCESS * len(pipeline.consumers))
    await reset_table(db)
    await pipeline.enqueue(count)
    await wait_drained(pipeline, db, count * BATCH)
    await verify_rows(pipeline, db, count * BATCH)


async def measure(pipeline: Pipeline, count: int, db: Database, reads: int) -> Run:
    """One run: start the consumers, warm them up, enqueue everything, wait until it is
    all in."""
    try:
        await pipeline.start(count)
        await asyncio.sleep(SETTLE_S)
        await warm_up(pipeline, db)
        await reset_table(db)
        await settle_redis(pipeline.urls.redis_url)
        pids = [process.pid for process in pipeline.consumers]
        for pid in pids:
            reset_peak_rss(pid)  # the run's peak, not the warm-up's
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        postgres_before = postgres_cpu_seconds()
        idle_before, total_before = machine_cpu()
        with RedisUsage(pipeline.urls.redis_url) as redis_usage:
            enqueued = await pipeline.enqueue()
            finished = await wait_drained(pipeline, db, reads)
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        postgres_cpu = postgres_cpu_since(postgres_before)
        idle_after, total_after = machine_cpu()
        rss = max(peak_rss_mb(pid) for pid in pids)
        await verify_rows(pipeline, db, reads)
    finally:
        await pipeline.close()
    return Run(
        label=pipeline.label,
        consumers=count,
        reads=reads,
        seconds=finished - enqueued.started_at,
        consumer_cpu_s=cpu,
        producer_cpu_s=enqueued.producer_cpu_s,
        peak_rss_mb=rss,
        redis_mb=redis_usage.growth_mb,
        redis_cpu_s=redis_usage.cpu_s,
        postgres_cpu_s=postgres_cpu,
        idle_share=(idle_after - idle_before) / max(1, total_after - total_before),
    )


async def measure_paced(
    urls: ServiceUrls,
    entries: list[bytes],
    count: int,
    workdir: Path,
    db: Database,
) -> list[float]:
    """Each GridLens consumer's CPU as % of one core while jobs arrive at the cap."""
    pipeline = GridLens(urls, entries[:PACED_JOBS], workdir)
    reads = PACED_JOBS * BATCH
    await reset_table(db)
    try:
        await pipeline.start(count)
        await asyncio.sleep(SETTLE_S)
        pids = [process.pid for process in pipeline.consumers]
        before = [cpu_seconds(pid) for pid in pids]
        started = time.monotonic()
        await pipeline.enqueue_paced(PACED_JOBS_PER_S)
        await wait_drained(pipeline, db, reads)
        elapsed = time.monotonic() - started
        used = [cpu_seconds(pid) - cpu for pid, cpu in zip(pids, before, strict=True)]
        await verify_rows(pipeline, db, reads)
    finally:
        await pipeline.close()
    return [seconds / elapsed * 100 for seconds in used]


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def median_run(runs: list[Run]) -> Run:
    """The run with the median reads/s (the slower middle one of an even number)."""
    return sorted(runs, key=lambda run: run.reads_per_s)[(len(runs) - 1) // 2]


def print_table(count: int, results: dict[str, list[Run]]) -> list[Run]:
    """One row per pipeline (its median run); returns those runs."""
    plural = "es" if count > 1 else ""
    print(f"\n{count} consumer process{plural}:")
    print(
        f"  {'pipeline':<14}{'reads/s':>9}{'(range of runs)':>19}{'CPU s/100k':>12}"
        f"{'producer':>10}{'Redis':>7}{'PostgreSQL':>12}{'idle':>6}"
        f"{'peak RSS MB/proc':>18}{'peak Redis MB':>15}"
    )
    medians: list[Run] = []
    for label, runs in results.items():
        if not runs:
            continue
        run = median_run(runs)
        medians.append(run)
        low, high = min(r.reads_per_s for r in runs), max(r.reads_per_s for r in runs)
        spread = f"({low:,.0f}–{high:,.0f})"
        print(
            f"  {label:<14}{run.reads_per_s:>9,.0f}{spread:>19}{run.cpu_per_100k:>12.3f}"
            f"{run.producer_cpu_per_100k:>10.3f}{run.redis_cpu_per_100k:>7.3f}"
            f"{run.postgres_cpu_per_100k:>12.3f}{run.idle_share:>6.0%}"
            f"{run.peak_rss_mb:>18.1f}{run.redis_mb:>15.1f}"
        )
    return medians


def print_ratios(runs: list[Run]) -> None:
    gridlens = next((run for run in runs if run.label == GridLens.label), None)
    others = [run for run in runs if run.label != GridLens.label]
    if gridlens is None:
        return
    print(
        f"  GridLens CPU per 100k reads: {gridlens.cpu_per_100k:.3f} s "
        f"(target ≤ {TARGET_CPU_PER_100K}: {met(gridlens.cpu_per_100k <= TARGET_CPU_PER_100K)})"
    )
    if not others:
        return
    best = max(others, key=lambda run: run.reads_per_s)
    speedup = gridlens.reads_per_s / best.reads_per_s
    print(
        f"  GridLens / best BullMQ ({best.label}) throughput: {speedup:.2f}× "
        f"(target ≥ {TARGET_SPEEDUP}×: {met(speedup >= TARGET_SPEEDUP)})"
    )
    for other in others:
        cpu = gridlens.cpu_per_100k / other.cpu_per_100k
        memory = gridlens.redis_mb / other.redis_mb if other.redis_mb > 0 else float("inf")
        speed = gridlens.reads_per_s / other.reads_per_s
        print(
            f"  GridLens / {other.label}: throughput {speed:.2f}×,"
            f" CPU per 100k reads {cpu:.2f}×, Redis memory {memory:.2f}× "
            f"(target < 1×: {met(memory < 1)})"
        )


def print_cpu_expectation(results: dict[str, list[Run]]) -> None:
    """The throughput ratio that CPU alone predicts. With every core busy, reads/s go as
    1 / (the whole machine's CPU per read): PostgreSQL's, the same statement whichever
    pipeline feeds it (so the median over every run), plus the pipeline's own
    (consumers, producer, Redis). A pipeline whose own share is small against
    PostgreSQL's cannot be much faster than another."""
    postgres = statistics.median(
        run.postgres_cpu_per_100k for runs in results.values() for run in runs
    )
    own = {
        label: statistics.median(run.own_cpu_per_100k for run in runs)
        for label, runs in results.items()
        if runs
    }
    gridlens = own.get(GridLens.label)
    if gridlens is None or len(own) < 2:
        return
    shown = ", ".join(f"{label} {seconds:.3f} s" for label, seconds in own.items())
    leaner = min(seconds for label, seconds in own.items() if label != GridLens.label)
    print(
        f"  CPU per 100k reads: PostgreSQL {postgres:.3f} s (median of every run); each"
        f" pipeline's own (consumers, producer, Redis): {shown}; with every core busy, CPU alone"
        f" puts GridLens / the leaner BullMQ at {(postgres + leaner) / (postgres + gridlens):.2f}×"
    )


def print_rounds(rounds: list[dict[str, Run]]) -> None:
    """GridLens against the better BullMQ run of each round: how much of the median's
    ratio is the machine's run-to-run noise. A round without a GridLens run or without a
    BullMQ run is left out."""
    ratios = []
    for runs in rounds:
        others = [run.reads_per_s for label, run in runs.items() if label != GridLens.label]
        if GridLens.label in runs and others:
            ratios.append(runs[GridLens.label].reads_per_s / max(others))
    if not ratios:
        return
    shown = " ".join(f"{ratio:.2f}" for ratio in ratios)
    ahead = sum(ratio >= TARGET_SPEEDUP for ratio in ratios)
    print(
        f"  round by round, GridLens / the round's better BullMQ: {shown}"
        f" ({ahead} of {len(ratios)} at ≥ {TARGET_SPEEDUP}×)"
    )


def print_paced(count: int, percents: list[float]) -> None:
    shown = ", ".join(f"{percent:.1f}%" for percent in percents)
    worst = max(percents)
    plural = "es" if count > 1 else ""
    print(
        f"  {count} consumer process{plural}: {shown} of one core "
        f"(target < {TARGET_PACED_CPU_PCT:.0f}%: {met(worst < TARGET_PACED_CPU_PCT)})"
    )


def available() -> Iterator[type[Pipeline]]:
    for pipeline in PIPELINES:
        reason = pipeline.unavailable()
        if reason is None:
            yield pipeline
        else:
            print(f"{pipeline.label} skipped: {reason}")


async def measure_count(
    pipelines: list[type[Pipeline]],
    count: int,
    context: tuple[ServiceUrls, list[bytes], Path],
    db: Database,
) -> list[dict[str, Run]]:
    """REPEATS rounds of one run per pipeline, taking turns, so that drift hits them alike;
    each round starts with the next pipeline, so that each runs first (and last) equally
    often. One dict per round: the runs that succeeded, by pipeline."""
    urls, entries, workdir = context
    rounds: list[dict[str, Run]] = []
    for round_ in range(REPEATS):
        first = round_ % len(pipelines)
        runs: dict[str, Run] = {}
        for pipeline in pipelines[first:] + pipelines[:first]:
            try:
                runs[pipeline.label] = await measure(
                    pipeline(urls, entries, workdir), count, db, len(entries) * BATCH
                )
            except Exception as error:
                print(f"{pipeline.label} with {count} consumer(s) failed: {error}")
        rounds.append(runs)
    return rounds


def by_pipeline(rounds: list[dict[str, Run]]) -> dict[str, list[Run]]:
    labels = dict.fromkeys(label for runs in rounds for label in runs)
    return {label: [runs[label] for runs in rounds if label in runs] for label in labels}


def print_legend(reads: int, jobs: int) -> None:
    print(
        f"{reads:,} reads per run in {jobs} jobs of {BATCH}, enqueued at once; same table, same"
        f" statement; {CONCURRENCY} jobs in flight per consumer process (GridLens: its adaptive"
        f" limit, 5–10, from {CONCURRENCY}); median of {REPEATS}"
        " runs by reads/s (the slower middle one), the pipelines taking turns (each round starting"
        " with the next one);"
        " the fleet registered once before; each run's consumer processes warmed up with"
        f" {WARMUP_JOBS_PER_PROCESS} jobs per process, untimed; the reads and rollups emptied"
        " before every run.\n"
        "reads/s: first enqueue to queue drained (every job committed, then acknowledged).\n"
        "CPU s/100k: user+system CPU of the consumer processes per 100,000 reads; apart, the"
        " enqueueing client's (producer), the Redis server's and PostgreSQL's (every postgres"
        " process on this machine): not client CPU. idle: the machine's idle share of the run.\n"
        "peak RSS: VmHWM of the largest consumer process. peak Redis: INFO used_memory sampled"
        " every 10 ms, peak minus the baseline just before enqueueing."
    )


async def run_all(urls: ServiceUrls, entries: list[bytes], workdir: Path) -> None:
    pipelines = list(available())
    print_legend(len(entries) * BATCH, len(entries))
    async with await psycopg.AsyncConnection.connect(urls.database_url, autocommit=True) as db:
        await register_fleet(db, entries)
        for count in CONSUMER_COUNTS:
            rounds = await measure_count(pipelines, count, (urls, entries, workdir), db)
            results = by_pipeline(rounds)
            print_ratios(print_table(count, results))
            print_cpu_expectation(results)
            print_rounds(rounds)
        print(
            f"\nGridLens at the cap: {PACED_JOBS} jobs of {BATCH} reads at {PACED_JOBS_PER_S:.0f}"
            f" jobs/s ({PACED_JOBS_PER_S * BATCH:,.0f} reads/s for "
            f"{PACED_JOBS / PACED_JOBS_PER_S:.0f} s), CPU of each consumer process:"
        )
        for count in PACED_CONSUMERS:
            print_paced(count, await measure_paced(urls, entries, count, workdir, db))


def main() -> None:
    started = time.perf_counter()
    entries = workload()
    print(f"workload generated in {time.perf_counter() - started:.1f} s")
    with bench_services() as urls, tempfile.TemporaryDirectory() as workdir:
        asyncio.run(run_all(urls, entries, Path(workdir)))


if __name__ == "__main__":
    main()
