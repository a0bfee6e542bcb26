"""The README stays a short guide whose module map matches the tree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PACKAGES = ("gridlens", "producer", "consumer", "api", "app")


def mapped_modules() -> dict[str, set[str]]:
    """The modules the README's map names, under each package's heading row."""
    mapped: dict[str, set[str]] = {}
    package = None
    for row in README.splitlines():
        heading = re.match(r"\| \*\*`(\w+)/`\*\* \|", row)
        if heading:
            package = heading.group(1)
            mapped[package] = set()
        elif package and row.startswith("| "):
            first_cell = row.split("|")[1]
            mapped[package] |= set(re.findall(r"`(\w+\.py)`", first_cell))
        elif package and not row.startswith("|"):
            package = None
    return mapped


def test_the_module_map_names_every_module_and_no_other() -> None:
    mapped = mapped_modules()
    for package in PACKAGES:
        modules = {path.name for path in (ROOT / package).glob("*.py")} - {"__init__.py"}
        assert mapped.get(package) == modules, package


def test_the_readme_is_a_short_guide() -> None:
    assert len(README.splitlines()) <= 350
    head = "\n".join(README.splitlines()[:40])
    assert "make run" in head and "make test" in head
    outside = [
        url
        for url in re.findall(r"https?://[^\s)\"'`]+", README)
        if not re.match(r"https?://(localhost|127\.0\.0\.1)[:/]", url)
    ]
    assert outside == []
