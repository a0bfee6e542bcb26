"""ops/grafana/: the dashboard is well formed, its PromQL parses (promtool) and names only
metrics the processes export, and its SQL runs against the migrated schema."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from aiohttp.test_utils import TestClient
from psycopg_pool import AsyncConnectionPool

import consumer.metrics  # noqa: F401  (registers the consumer's metrics: /metrics lists them too)
from tests.test_kpi import ingest
from tests.tools import tool

GRAFANA = Path(__file__).resolve().parent.parent / "ops" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "gridlens.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "gridlens.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "gridlens.yml"
DASHBOARDS_MOUNT = "/var/lib/grafana/dashboards"

# Grafana's built-in variables in PromQL, as Grafana would fill them for a 6-hour range.
PROMQL_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "6h"}
TEMPLATE_VALUE = "TEST_TENANT"  # every template variable, in PromQL
SQL_MACRO = re.compile(r"\$__(\w+)\(([^)]*)\)")
VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
METRIC_NAME = re.compile(r"\bgridlens_\w+")
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\w+)$", re.MULTILINE)
SERIES_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}

METERS = 40
INTERVALS = 8
READS_START = datetime(2026, 2, 10, tzinfo=UTC)  # the reads: 15-minute intervals after it
RANGE = (READS_START, READS_START + timedelta(hours=6))  # the dashboard's time range


@dataclass(frozen=True)
class Query:
    """One query of the dashboard: a panel's target, or a template variable's."""

    where: str  # "panel 9 (Queue depth), target B", "variable tenant"
    record: str  # a recording-rule name for promtool: panel_9_B
    datasource_uid: str
    text: str  # PromQL or SQL, as Grafana holds it
    format: str  # SQL result format: "time_series" or "table"


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels nested in collapsed rows included."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[Query]:
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            yield Query(
                where=f"panel {panel['id']} ({panel['title']}), target {target['refId']}",
                record=f"panel_{panel['id']}_{target['refId']}",
                datasource_uid=target["datasource"]["uid"],
                text=target.get("expr") or target["rawSql"],
                format=target.get("format", ""),
            )
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield Query(
                where=f"variable {variable['name']}",
                record=f"variable_{variable['name']}",
                datasource_uid=variable["datasource"]["uid"],
                text=variable["query"],
                format="table",
            )


def provisioned_datasources() -> dict[str, dict[str, Any]]:
    """The provisioned data sources, by uid."""
    provisioning = yaml.safe_load(DATASOURCES.read_text())
    return {source["uid"]: source for source in provisioning["datasources"]}


def queries_of(datasource_type: str) -> list[Query]:
    types = {uid: source["type"] for uid, source in provisioned_datasources().items()}
    return [q for q in queries(load_dashboard()) if types[q.datasource_uid] == datasource_type]


def substitute_variables(text: str, value: Callable[[str, str | None], str]) -> str:
    """Replace $name, ${name} and ${name:formatter} by value(name, formatter)."""
    return VARIABLE.sub(lambda match: value(match[1] or match[3], match[2]), text)


def promql(text: str) -> str:
    """The expression Grafana would send to Prometheus."""

    def value(name: str, formatter: str | None) -> str:
        if name.startswith("__"):
            if name not in PROMQL_BUILTINS:
                pytest.fail(f"${name}: add Grafana's variable to PROMQL_BUILTINS")
            return PROMQL_BUILTINS[name]
        return TEMPLATE_VALUE

    return substitute_variables(text, value)


def sql(text: str, tenant: str) -> str:
    """The statement Grafana's PostgreSQL data source would run for RANGE and tenant."""
    time_from, time_to = (moment.strftime("'%Y-%m-%dT%H:%M:%SZ'") for moment in RANGE)

    def macro(match: re.Match[str]) -> str:
        name, argument = match[1], match[2].strip()
        if name == "timeFilter":
            return f"{argument} BETWEEN {time_from} AND {time_to}"
        if name == "timeFrom":
            return time_from
        if name == "timeTo":
            return time_to
        if name == "time":
            return f'{argument} AS "time"'
        pytest.fail(f"$__{name}(): teach the test's sql() Grafana's macro")

    def value(name: str, formatter: str | None) -> str:
        if name != "tenant" or formatter not in (None, "sqlstring"):
            pytest.fail(f"${{{name}:{formatter}}}: teach the test's sql() this variable")
        return f"'{tenant}'" if formatter == "sqlstring" else tenant

    return substitute_variables(SQL_MACRO.sub(macro, text), value)


def test_the_dashboard_is_identified_and_every_panel_placed() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "gridlens-ami" and dashboard["title"] == "GridLens AMI ingestion"
    assert dashboard["schemaVersion"] >= 39
    panels = list(all_panels(dashboard))
    ids = [panel["id"] for panel in panels]
    assert all(type(panel_id) is int for panel_id in ids), ids
    assert len(ids) == len(set(ids)), f"panel ids repeat: {sorted(ids)}"
    for panel in panels:
        position = panel.get("gridPos", {})
        assert {"h", "w", "x", "y"} <= position.keys(), f"panel {panel['id']}: gridPos {position}"
        assert position["x"] + position["w"] <= 24, f"panel {panel['id']} is wider than the grid"


def test_every_panel_and_query_names_a_provisioned_data_source() -> None:
    dashboard = load_dashboard()
    uids = provisioned_datasources().keys()
    for panel in all_panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] in uids, f"panel {panel['id']}"
    for query in queries(dashboard):
        assert query.datasource_uid in uids, query.where
    assert {q.datasource_uid for q in queries(dashboard)} == set(uids)


def test_the_provisioning_files_parse() -> None:
    sources = provisioned_datasources()
    assert sources.keys() == {"gridlens-prometheus", "gridlens-postgres"}
    assert sources["gridlens-prometheus"]["url"] == "http://prometheus:9090"
    postgres = sources["gridlens-postgres"]
    assert postgres["user"] == "gridlens"
    assert postgres["jsonData"]["database"] == "gridlens"
    assert postgres["jsonData"]["sslmode"] == "disable"
    password = postgres["secureJsonData"]["password"]
    assert password.startswith("$"), "the password is in the file: name an environment variable"
    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    assert [provider["options"]["path"] for provider in providers] == [DASHBOARDS_MOUNT]


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    promtool = tool("promtool")
    expressions = queries_of("prometheus")
    assert len(expressions) >= 20
    rules = [{"record": query.record, "expr": promql(query.text)} for query in expressions]
    rules_file = tmp_path / "dashboard_rules.yml"  # JSON is YAML
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    output = checked.stdout + checked.stderr
    failing = [f"{q.where}: {q.text}" for q in expressions if f'"{q.record}"' in output]
    assert checked.returncode == 0, "\n".join(["promtool check rules failed:", *failing, output])


async def test_every_metric_the_dashboard_names_is_exported(
    client: TestClient[Any, Any],
) -> None:
    """The API's scrape (with the consumer's metrics registered in this process too)."""
    exposition = await (await client.get("/metrics")).text()
    exported = {
        name + suffix
        for name, kind in TYPE_LINE.findall(exposition)
        for suffix in SERIES_SUFFIXES.get(kind, ("",))
    }
    for query in queries_of("prometheus"):
        unknown = set(METRIC_NAME.findall(query.text)) - exported
        assert not unknown, f"{query.where} names metrics no process exports: {unknown}"


async def test_every_sql_query_runs_against_the_schema(pool: AsyncConnectionPool[Any]) -> None:
    tenant = "GRAFANA_" + uuid.uuid4().hex[:8]
    await ingest(pool, tenant, METERS, READS_START, INTERVALS)
    statements = queries_of("grafana-postgresql-datasource")
    assert len(statements) >= 6
    rows: dict[str, list[tuple[Any, ...]]] = {}
    async with pool.connection() as conn:
        for query in statements:
            statement = sql(query.text, tenant)
            try:
                cursor = await conn.execute(statement.encode())
            except psycopg.Error as error:
                pytest.fail(f"{query.where} fails: {error}\n{statement}", pytrace=False)
            columns = [column.name for column in cursor.description or []]
            rows[query.record] = await cursor.fetchall()
            if query.format == "time_series":  # Grafana needs a time column, then values
                assert columns[0] == "time" and len(columns) >= 2, f"{query.where}: {columns}"
                assert rows[query.record], f"{query.where}: none of the tenant's reads"
    assert (tenant,) in rows["variable_tenant"]
