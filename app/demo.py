"""`make demo`: the acceptance of SPEC §9 against the running stack, PASS or FAIL each."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.api_client import Answer, ApiClient, ApiFailure

TENANT = "DEMO_TENANT"
PUBLISH = {
    "tenantId": TENANT,
    "intervalMinutes": 15,
    "batchSize": 500,
    "meterCount": 25_000,
    "feederCount": 25,
}
INGEST_TIMEOUT_S = 180.0
RATE_CAP = 2_500
LINES = (
    "dry run reports 50 batches / 50 jobs for 25,000 meters at 500",
    "the real run enqueues ≤ 200 jobs of ≤ 500 meters, at ≤ 2,500 reads/s",
    "status shows ≥ 25,000 distinct meters once the jobs are consumed",
    "quickcheck returns non-empty data",
    "no Redis auth errors, no database timeouts",
)


@dataclass
class Check:
    line: str  # the acceptance line of SPEC §9
    passed: bool
    figures: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.line}\n      {self.figures}"


async def run_demo(client: ApiClient, say: Callable[[str], None] = print) -> bool:
    """Run the four commands of SPEC §9 and say how each acceptance line went."""
    failures: list[str] = []

    async def guarded(line: str, step: Callable[[], Awaitable[Check]]) -> None:
        try:
            check = await step()
        except (ApiFailure, OSError, KeyError, TimeoutError) as error:
            check = Check(line, False, f"error: {error!r}")
        if not check.passed:
            failures.append(check.line)
        say(str(check))

    ready = await client.get("/readyz")
    say(f"stack at {client.base_url}: readyz {ready.status} {ready.body}")
    published: list[Answer] = []
    await guarded(LINES[0], lambda: _dry_run(client))
    await guarded(LINES[1], lambda: _publish(client, published))
    await guarded(LINES[2], lambda: _status(client, published))
    await guarded(LINES[3], lambda: _quickcheck(client))
    await guarded(LINES[4], lambda: _healthy(client))
    say(f"{'all passed' if not failures else f'{len(failures)} failed'}")
    return not failures


async def _dry_run(client: ApiClient) -> Check:
    answer = await client.publish({**PUBLISH, "dryRun": True})
    body = answer.body
    passed = body["computedBatches"] == 50 and body["estimatedJobs"] == 50
    return Check(
        LINES[0],
        passed,
        f"computedMeters {body['computedMeters']}, computedBatches "
        f"{body['computedBatches']}, estimatedJobs {body['estimatedJobs']}, "
        f"estimatedRuntimeSeconds {body['estimatedRuntimeSeconds']}",
    )


async def _publish(client: ApiClient, published: list[Answer]) -> Check:
    started = time.monotonic()
    answer = await client.publish(PUBLISH)
    published.append(answer)
    body = answer.body
    floor_s = max(0.0, (body["reads"] - RATE_CAP) / RATE_CAP)
    passed = body["jobs"] <= 200 and body["batchSize"] <= 500 and body["elapsedSeconds"] >= floor_s
    return Check(
        LINES[1],
        passed,
        f"{body['jobs']} jobs of ≤ {body['batchSize']} meters, {body['reads']:,} reads "
        f"in {body['elapsedSeconds']} s (≥ {floor_s:.1f} s at the cap), wall "
        f"{time.monotonic() - started:.1f} s",
    )


async def _status(client: ApiClient, published: list[Answer]) -> Check:
    cycles = published[0].body["cyclesToCoverFleet"] if published else 1
    for _ in range(cycles - 1):  # a truncated fleet needs further publishes
        published.append(await client.publish(PUBLISH))
    deadline = time.monotonic() + INGEST_TIMEOUT_S
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = (await client.get("/api/ami/scale/status", tenantId=TENANT)).body
        queue = body.get("queue", {})
        if (
            body.get("totalDistinctMeters", 0) >= 25_000
            and not queue.get("waiting")
            and (not queue.get("active"))
        ):
            break
        await asyncio.sleep(1.0)
    passed = body.get("totalDistinctMeters", 0) >= 25_000
    return Check(
        LINES[2],
        passed,
        f"totalDistinctMeters {body.get('totalDistinctMeters')}, totalReads "
        f"{body.get('totalReads')}, latestReadAt {body.get('latestReadAt')}, "
        f"{len(published)} publish(es) ({cycles} cycle(s) cover the fleet), queue "
        f"{body.get('queue')}, consumers alive {body.get('consumersAlive')}",
    )


async def _quickcheck(client: ApiClient) -> Check:
    body = (await client.get("/api/ami/kpi/quickcheck", tenantId=TENANT)).body
    passed = bool(body.get("intervals")) and bool(body.get("feederLoad"))
    return Check(
        LINES[3],
        passed,
        f"{len(body.get('intervals', []))} intervals, {len(body.get('feederLoad', []))} "
        f"feeder rows, completeness {[c['completeness'] for c in body.get('completeness', [])]}"
        f", {body.get('voltageAnomalies', {}).get('readsOutsideRangeA')} reads outside "
        f"Range A, {body.get('theftSuspects', {}).get('count')} theft suspects",
    )


async def _healthy(client: ApiClient) -> Check:
    ready = await client.get("/readyz")
    return Check(
        LINES[4],
        ready.status == 200,
        f"readyz {ready.status}: {ready.body}; every request above answered without a 503",
    )
