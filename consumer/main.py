"""``gridlens consume``: one consumer process, stopped cleanly by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal

from prometheus_client import start_http_server

from consumer.housekeeping import SideTaskDied
from consumer.limit import AdaptiveLimit
from consumer.worker import Consumer
from gridlens.connections import postgres_pool, redis_client
from gridlens.settings import Settings

log = logging.getLogger(__name__)


async def run_consumer(settings: Settings) -> int:
    """Consume until SIGTERM or SIGINT; the exit status: 1 when a side task died."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # The handler only sets the event: the loop stops reading, then drains.
        loop.add_signal_handler(signum, stop.set)
    client = redis_client(settings.resolved_redis_url)
    pool = postgres_pool(
        settings.resolved_database_url,
        # Connections for the starting limit are opened at start, so the first burst of
        # jobs does not wait for them; more are opened if the limit rises.
        min_size=settings.consumer_concurrency,
        max_size=AdaptiveLimit.maximum,  # one connection per job in flight, at most
        statement_timeout_s=settings.insert_timeout_s,
        name="gridlens-consumer",
        autocommit=True,  # one INSERT per job: committed when it returns
    )
    if settings.metrics_port is not None:
        serve_metrics(settings.host, settings.metrics_port)
    status = 0
    try:
        await pool.open(wait=False)
        await Consumer(settings, client, pool).run(stop)
    except SideTaskDied:
        status = 1  # logged where it died; the supervisor starts a new process
    finally:
        await pool.close()
        await client.aclose()
    log.info("consumer stopped", extra={"action": "consumer_stop", "status": status})
    return status


def serve_metrics(host: str, port: int) -> None:
    """Serve /metrics; a port already taken is logged, and ingesting goes on without it.

    Restarting would not free the port, and a consumer that crash-loops ingests
    nothing. Prometheus shows more consumers alive than consumer targets up
    (GridLensConsumersUnscraped); the target is down as well (GridLensScrapeTargetDown)
    unless what holds the port is another consumer, which serves its own metrics there.
    """
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise  # a wrong host or a forbidden port is a setting to fix, not to run without
        log.error(
            "metrics port unavailable; consuming without metrics",
            extra={"action": "metrics_unavailable", "port": port, "error": str(exc)},
        )
        return
    log.info("metrics served", extra={"action": "metrics_start", "port": port})
