"""GridLens processes a test starts itself (`python -m app api`, `… consume`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def service_env(
    database_url: str, redis_url: str, namespace: str, data_dir: Path, **settings: str
) -> dict[str, str]:
    """This environment without GRIDLENS_ settings, naming the test's servers, namespace and
    data dir, plus ``settings`` (GRIDLENS_… variables)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("GRIDLENS_")},
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "GRIDLENS_REDIS_NAMESPACE": namespace,
        "GRIDLENS_DATA_DIR": str(data_dir),
        **settings,
    }


def start(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m app <command>``, its stderr (the JSON log) into ``log``."""
    with log.open("wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "app", command], env=env, stderr=stderr)


def stop(processes: list[subprocess.Popen[bytes]], within_s: float = 30) -> None:
    """SIGTERM to each, then wait for all."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        process.wait(within_s)
