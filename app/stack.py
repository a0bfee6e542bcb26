"""The whole stack in one command: services, migrations, API and consumers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Sequence

from app.api_client import wait_ready
from app.embedded import running_services
from app.migrate import migrate
from app.supervisor import ChildSpec, Supervisor, WatchedServer, gridlens_command
from gridlens.apikey import ensure_api_key
from gridlens.connections import verify_services
from gridlens.errors import GridLensError
from gridlens.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0


class StartupError(GridLensError, RuntimeError):
    """The stack cannot start; the message is one line for the operator."""


def run_stack(settings: Settings) -> int:
    api_key = ensure_api_key(settings)
    with running_services(settings.data_dir, settings.database_url, settings.redis_url) as urls:
        problems = asyncio.run(verify_services(urls.database_url, urls.redis_url))
        if problems:
            raise StartupError("; ".join(problems))
        applied = asyncio.run(migrate(urls.database_url))
        log.info("schema ready", extra={"action": "migrate", "applied": applied})
        resolved = settings.resolved(urls.database_url, urls.redis_url, api_key)
        asyncio.run(_supervise(resolved, urls.owned))
    log.info("stack stopped", extra={"action": "stack_stop"})
    return 0


async def _supervise(settings: Settings, servers: Sequence[WatchedServer]) -> None:
    """Run the children, and watch the servers this process owns, until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    env = {
        **os.environ,
        "DATABASE_URL": settings.resolved_database_url,
        "REDIS_URL": settings.resolved_redis_url,
        "GRIDLENS_API_KEY": settings.resolved_api_key,
        "GRIDLENS_DATA_DIR": str(settings.data_dir),
    }
    children = [ChildSpec("api", gridlens_command("api"))] + [
        # Consumer n serves its metrics on the API's port + n (5001, 5002, …).
        ChildSpec(
            f"consumer-{n}",
            gridlens_command("consume"),
            {"GRIDLENS_METRICS_PORT": str(settings.port + n)},
        )
        for n in range(1, settings.consumers + 1)
    ]
    supervisor = Supervisor(children, env, kill_after_s=settings.kill_after_s, servers=servers)
    running = asyncio.create_task(supervisor.run(stop))
    base = f"http://{settings.host}:{settings.port}"
    if await wait_ready(base, READY_TIMEOUT_S, stop):
        print(banner(base, settings), flush=True)
    elif not stop.is_set():
        log.error("api not ready", extra={"action": "stack_not_ready", "url": f"{base}/readyz"})
    await running


def banner(base: str, settings: Settings) -> str:
    base = base.replace("127.0.0.1", "localhost")
    publish = (
        f"curl -s -X POST {base}/api/ami/publish-once "
        '-H "Authorization: Bearer $GRIDLENS_API_KEY" -H "Content-Type: application/json" \\\n'
        '  -d \'{"tenantId":"DEMO_TENANT","intervalMinutes":15,"batchSize":500,'
        '"meterCount":25000,"feederCount":25%s}\' | python3 -m json.tool'
    )
    lines = [
        "",
        f"GridLens is up. The live page: {base}/",
        f"API {base}, {settings.consumers} consumer process(es), data in {settings.data_dir}. "
        "Ctrl-C stops everything.",
        "",
        f"export GRIDLENS_API_KEY={settings.resolved_api_key}",
        "(the page asks for this key to publish"
        + (", and to read" if settings.auth_reads else "")
        + "), or from a terminal:",
        "",
        publish % ',"dryRun":true',
        publish % "",
        f'curl -s "{base}/api/ami/scale/status?tenantId=DEMO_TENANT" | python3 -m json.tool',
        f'curl -s "{base}/api/ami/kpi/quickcheck?tenantId=DEMO_TENANT" | python3 -m json.tool',
        "",
    ]
    return "\n".join(lines)
