"""Prometheus, for real: promtool on the shipped configuration, alert rules and
live /metrics, and a Prometheus server scraping a running API and consumer.

Tools come from Debian's prometheus package, which `make tools` installs when
it is missing (`ops/install-tools`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from app.embedded import free_port
from tests import http
from tests.conftest import TEST_API_KEY, Servers
from tests.tools import tool

OPS = Path(__file__).resolve().parent.parent / "ops" / "prometheus"
READY_WITHIN_S = 60.0
METERS = 1_000


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def load(name: str) -> Any:
    return yaml.safe_load((OPS / name).read_text())


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "prometheus.yml"),
        ("check", "rules", "alerts.yml"),
        ("test", "rules", "alerts.test.yml"),
    ],
    ids=" ".join,
)
def test_the_shipped_prometheus_files_pass_promtool(args: tuple[str, ...]) -> None:
    *verb, name = args
    result = promtool(*verb, str(OPS / name))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    alerts = {rule["alert"] for group in load("alerts.yml")["groups"] for rule in group["rules"]}
    firing: set[str] = set()
    silent: set[str] = set()
    for case in load("alerts.test.yml")["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert firing == alerts
    assert silent == alerts


def wait_until(condition: Callable[[], bool], what: str, within_s: float = READY_WITHIN_S) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {within_s:.0f} s")
        time.sleep(0.2)


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def answers(url: str) -> bool:
    try:
        fetch(url)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Stack:
    api: str  # host:port of the API process
    consumer: str  # host:port of the consumer process's metrics


@pytest.fixture
def stack(database_url: str, servers: Servers, namespace: str, tmp_path: Path) -> Iterator[Stack]:
    """`gridlens api` and one `gridlens consume`, as separate processes."""
    api_port, metrics_port = free_port(), free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("GRIDLENS_")}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=servers.redis_url,
        GRIDLENS_REDIS_NAMESPACE=namespace,
        GRIDLENS_API_KEY=TEST_API_KEY,
        GRIDLENS_PORT=str(api_port),
        GRIDLENS_DATA_DIR=str(tmp_path),
        GRIDLENS_SHUTDOWN_GRACE_S="5",
    )
    processes = []
    for command, extra in (("api", {}), ("consume", {"GRIDLENS_METRICS_PORT": str(metrics_port)})):
        with (tmp_path / f"{command}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "app", command], env=env | extra, stderr=log
                )
            )
    found = Stack(api=f"127.0.0.1:{api_port}", consumer=f"127.0.0.1:{metrics_port}")
    try:
        wait_until(lambda: answers(f"http://{found.api}/readyz"), "the API did not answer")
        wait_until(
            lambda: answers(f"http://{found.consumer}/metrics"), "the consumer did not answer"
        )
        yield found
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        client = redis.Redis.from_url(servers.redis_url)
        keys = list(client.scan_iter(match="{" + namespace + "}:*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_live_metrics_of_the_api_and_a_consumer_pass_promtool(stack: Stack) -> None:
    for endpoint, family in (
        (stack.api, "gridlens_queue_"),
        (stack.consumer, "gridlens_consumer_"),
    ):
        text = fetch(f"http://{endpoint}/metrics")
        assert family in text
        result = promtool("check", "metrics", stdin=text)
        assert (result.returncode, result.stdout + result.stderr) == (0, ""), endpoint


@pytest.fixture
def prometheus(stack: Stack, tmp_path: Path) -> Iterator[str]:
    """A Prometheus server on the shipped configuration, aimed at `stack`, scraping every second."""
    config = load("prometheus.yml")
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(OPS / name) for name in config["rule_files"]]
    targets = {"gridlens-api": [stack.api], "gridlens-consumer": [stack.consumer]}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
        job.pop("file_sd_configs", None)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    with (tmp_path / "prometheus.log").open("wb") as log:
        server = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address={address}",
            ],
            stdout=log,
            stderr=log,
        )
    try:
        wait_until(lambda: answers(f"http://{address}/-/ready"), "Prometheus was not ready")
        yield address
    finally:
        server.terminate()
        server.wait(30)


def query(prometheus: str, expression: str) -> list[dict[str, Any]]:
    url = f"http://{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    status, answer = http.request("GET", url)
    assert status == 200, answer
    return list(answer["data"]["result"])


def scalar(prometheus: str, expression: str) -> float | None:
    result = query(prometheus, expression)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_stack_and_reads_back_the_ingested_reads(
    stack: Stack, prometheus: str, namespace: str
) -> None:
    wait_until(lambda: scalar(prometheus, "sum(up)") == 2, "Prometheus did not scrape both targets")
    status, answer = http.request(
        "POST",
        f"http://{stack.api}/api/ami/publish-once",
        body=(
            b'{"tenantId":"%s","meterCount":%d,"feederCount":2,"readAt":"2026-11-20T08:00:00Z"}'
            % (namespace.replace("-", "_").encode(), METERS)
        ),
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
    )
    assert status == 200, answer

    expected = {
        "sum(gridlens_publish_reads_enqueued_total)": METERS,
        "sum(gridlens_consumer_reads_inserted_total)": METERS,
        'sum(gridlens_consumer_jobs_total{outcome="inserted"})': answer["jobs"],
        "max(gridlens_queue_completed_jobs_total)": answer["jobs"],
        "max(gridlens_queue_consumers_alive)": 1,
        'sum(up{job="gridlens-consumer"})': 1,  # the job GridLensConsumersUnscraped counts
    }
    for expression, value in expected.items():
        wait_until(
            lambda: scalar(prometheus, expression) == value,  # noqa: B023 (called at once)
            f"Prometheus did not read {expression} == {value}",
        )
    _, rules = http.request("GET", f"http://{prometheus}/api/v1/rules")
    loaded = [rule for group in rules["data"]["groups"] for rule in group["rules"]]
    assert sorted(rule["name"] for rule in loaded) == sorted(
        rule["alert"] for group in load("alerts.yml")["groups"] for rule in group["rules"]
    )
    assert {rule["health"] for rule in loaded} == {"ok"}
