"""The ``gridlens`` command."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

import aiohttp
import psycopg

from api.app import run_api
from api.kpi_refresh import refresh_stale_days
from app.api_client import ApiClient, ApiFailure
from app.backfill import Fleet, Progress, backfill, emulate, print_progress
from app.demo import run_demo
from app.embedded import running_services
from app.migrate import MigrationError, migrate
from app.report import fleet_stats, format_report
from app.stack import StartupError, run_stack
from app.supervisor import die_with_supervisor
from consumer.main import run_consumer
from gridlens import logs
from gridlens.apikey import ensure_api_key
from gridlens.connections import postgres_pool
from gridlens.entry import TENANT_PATTERN
from gridlens.errors import first_line
from gridlens.partitions import expired_days, prune
from gridlens.settings import DEFAULT_EV_SHARE, DEFAULT_PV_SHARE, Settings, SettingsError
from gridlens.sqlfiles import query
from producer.diversity import FleetMix


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridlens", description="AMI emulator and ingestion pipeline (see README.md)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="run the whole stack: services, migrations, API, consumers")
    commands.add_parser("migrate", help="apply the pending migrations of sql/")
    commands.add_parser("api", help="run one API process")
    commands.add_parser("consume", help="run one consumer process")
    report = commands.add_parser(
        "fleet-report", help="statistics of a fleet's event-free reads, computed without publishing"
    )
    report.add_argument("--tenant", required=True, type=_tenant)
    report.add_argument("--meters", type=_bounded(1, 1_000_000), default=10_000)
    report.add_argument("--feeders", type=_bounded(1, 99), default=25)
    report.add_argument("--days", type=_bounded(1, 366), default=7)
    report.add_argument("--interval", type=int, choices=(5, 15, 30, 60), default=15)
    report.add_argument(
        "--start", type=date.fromisoformat, help="first UTC day, YYYY-MM-DD (default: D days ago)"
    )
    report.add_argument("--pv-share", type=_share, default=DEFAULT_PV_SHARE, metavar="SHARE")
    report.add_argument("--ev-share", type=_share, default=DEFAULT_EV_SHARE, metavar="SHARE")
    for name, text in (
        ("backfill", "publish the last DAYS of intervals through the API"),
        ("emulate", "publish every interval as (simulated) time passes"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--tenant", required=True, type=_tenant)
        command.add_argument("--meters", type=_bounded(1, 25_000), default=500)
        command.add_argument("--feeders", type=_bounded(10, 40), default=25)
        command.add_argument("--interval", type=int, choices=(5, 15, 30, 60), default=15)
        command.add_argument("--batch-size", type=_bounded(1, 500), default=500)
        if name == "backfill":
            command.add_argument("--days", type=_bounded(1, 366), default=1)
        else:
            command.add_argument(
                "--speed",
                type=float,
                default=1.0,
                help="simulated time runs this many times faster (≥ 1)",
            )
    commands.add_parser("demo", help="run the acceptance of SPEC §9 against the running stack")
    commands.add_parser("rebuild-rollups", help="recompute the status rollups from the table")
    commands.add_parser("kpi-refresh", help="recompute changed KPI features, judge finished days")
    prune_command = commands.add_parser(
        "prune", help="drop the days of reads older than the retention window"
    )
    prune_command.add_argument(
        "--days",
        type=_bounded(1, 36_500),
        help="days to keep (default: GRIDLENS_RETENTION_DAYS)",
    )
    prune_command.add_argument(
        "--dry-run", action="store_true", help="show what would be dropped, drop nothing"
    )
    return parser


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]")
    return value


def _tenant(text: str) -> str:
    if not TENANT_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must match {TENANT_PATTERN.pattern}")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"gridlens: invalid setting: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, process=args.command)
    try:
        return _run(args.command, args, settings)
    except KeyboardInterrupt:
        return 130
    except (
        StartupError,
        MigrationError,
        TimeoutError,
        psycopg.OperationalError,
        ApiFailure,
        aiohttp.ClientError,
    ) as error:
        # Errors an operator can act on: one line, no traceback.
        print(f"gridlens: {first_line(error)}", file=sys.stderr)
        return 1


def _fleet_report(args: argparse.Namespace) -> int:
    start = args.start or datetime.now(UTC).date() - timedelta(days=args.days)
    stats = fleet_stats(
        args.tenant,
        args.meters,
        args.feeders,
        args.days,
        start=start,
        interval_minutes=args.interval,
        mix=FleetMix(pv_share=args.pv_share, ev_share=args.ev_share),
    )
    print(format_report(stats))
    return 0


async def _through_api(command: str, args: argparse.Namespace, settings: Settings) -> int:
    async with ApiClient.from_settings(settings) as client:
        if command == "demo":
            return 0 if await run_demo(client) else 1
        fleet = Fleet(args.tenant, args.meters, args.feeders, args.interval, args.batch_size)
        progress = Progress(settings.data_dir, command, fleet)
        if command == "backfill":
            reads = await backfill(client, fleet, args.days, progress, print_progress)
        else:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            reads = await emulate(
                client, fleet, max(args.speed, 1.0), progress, stop, print_progress
            )
        print(f"\n{command}: {reads:,} reads published")
        return 0


async def _rebuild_rollups(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        await conn.execute(query("rebuild_rollups"))


async def _kpi_refresh(database_url: str) -> int:
    async with postgres_pool(database_url, max_size=1) as pool:
        return len(await refresh_stale_days(pool))


async def _prune(database_url: str, keep_days: int, dry_run: bool) -> int:
    async with postgres_pool(database_url, max_size=1) as pool:
        days = await (expired_days if dry_run else prune)(pool, keep_days)
    verb = "would drop" if dry_run else "dropped"
    for expired in days:
        where = expired.partition or "default partition"
        print(f"{verb} {expired.day.date().isoformat()}  {expired.reads:>12,} reads  ({where})")
    total = sum(expired.reads for expired in days)
    print(f"{verb} {len(days)} day(s), {total:,} reads: keeping the last {keep_days} day(s)")
    return 0


def _run(command: str, args: argparse.Namespace, settings: Settings) -> int:
    if command == "up":
        return run_stack(settings)
    if command == "fleet-report":
        return _fleet_report(args)
    if command in ("backfill", "emulate", "demo"):
        return asyncio.run(_through_api(command, args, settings))
    keep_days = args.days or settings.retention_days if command == "prune" else None
    if command == "prune" and keep_days is None:
        print("gridlens: prune: set GRIDLENS_RETENTION_DAYS or pass --days", file=sys.stderr)
        return 2
    die_with_supervisor()
    with running_services(settings.data_dir, settings.database_url, settings.redis_url) as urls:
        if command == "migrate":
            applied = asyncio.run(migrate(urls.database_url))
            print(f"migrations applied: {', '.join(applied) or 'none pending'}")
            return 0
        if command == "rebuild-rollups":
            asyncio.run(_rebuild_rollups(urls.database_url))
            print("rollups rebuilt from meter_reads_electric")
            return 0
        if command == "kpi-refresh":
            refreshed = asyncio.run(_kpi_refresh(urls.database_url))
            print(f"kpi features refreshed for {refreshed} tenant-day(s)")
            return 0
        if keep_days is not None:  # prune
            return asyncio.run(_prune(urls.database_url, keep_days, args.dry_run))
        if command == "api":
            run_api(settings.resolved(urls.database_url, urls.redis_url, ensure_api_key(settings)))
            return 0
        resolved = settings.resolved(urls.database_url, urls.redis_url, settings.api_key)
        return asyncio.run(run_consumer(resolved))
