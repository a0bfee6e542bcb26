"""The OpenAPI document is the API's exact contract: schemathesis fuzzes it.

A real API process and a real consumer, on this run's database and a Redis namespace
of their own, meet every schemathesis check (response time aside) in positive and
negative modes and stateful sequences (an event created, listed, deleted), plus a
check of ours: a rejected request changes nothing (tests/fuzz/hooks.py).

The seed is drawn afresh each run and printed; GRIDLENS_FUZZ_SEED replays one.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.api_client import wait_ready
from app.embedded import free_port
from tests.conftest import TEST_API_KEY, Servers
from tests.processes import service_env, start, stop

ROOT = Path(__file__).resolve().parent.parent
MIN_CASES = 1_000
EXAMPLES_PER_OPERATION = 100  # per operation: about 2,000 cases over the twelve
FUZZ_TIMEOUT_S = 600
READY_WITHIN_S = 30.0


@pytest.fixture
def live_api(
    servers: Servers, database_url: str, namespace: str, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """An API process and a consumer process; (the API's URL, their environment)."""
    port = free_port()
    env = service_env(
        database_url,
        servers.redis_url,
        namespace,
        tmp_path,
        GRIDLENS_API_KEY=TEST_API_KEY,
        GRIDLENS_PORT=str(port),
        # A lowered cap (allowed: caps may only go down) keeps each generated publish
        # to 50 reads, so a thousand of them take seconds, not hours.
        GRIDLENS_MAX_METERS="50",
        GRIDLENS_LOG_LEVEL="WARNING",
    )
    processes = [start(command, env, tmp_path / f"{command}.log") for command in ("api", "consume")]
    base = f"http://127.0.0.1:{port}"
    try:
        assert asyncio.run(wait_ready(base, READY_WITHIN_S)), f"{base} not ready"
        yield base, env
    finally:
        stop(processes)
        with redis.Redis.from_url(servers.redis_url) as client:  # what they wrote
            keys = list(client.scan_iter(match="{" + namespace + "}:*"))
            if keys:
                client.delete(*keys)


def test_the_api_meets_its_openapi_document(
    live_api: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, env = live_api
    seed = int(os.environ.get("GRIDLENS_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "--config-file",
            str(ROOT / "tests" / "schemathesis.toml"),
            "run",
            f"{base}/api/openapi.json",
            "--checks",
            "all",
            "--mode",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            str(seed),
            "--workers",
            "1",
            "--header",
            f"Authorization: Bearer {TEST_API_KEY}",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
        ],
        env={**env, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=FUZZ_TIMEOUT_S,
        check=False,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    print(report)
    assert result.returncode == 0, f"seed {seed} (GRIDLENS_FUZZ_SEED replays it):\n{report}"
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated and int(generated.group(1)) >= MIN_CASES, report
