"""The tools some tests run for real (operations tools, a browser): found on PATH, or those
tests skip."""

from __future__ import annotations

import shutil

import pytest

PACKAGE_OF = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "docker-compose": "docker-compose",
    "systemd-analyze": "systemd",
    "chromium": "chromium",
}


def tool(name: str) -> str:
    """The tool's path; without it the test skips with one line saying how to get it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found: `make tools` installs it (Debian's {PACKAGE_OF[name]})")
    return path
