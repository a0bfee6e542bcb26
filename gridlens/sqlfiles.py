"""The SQL of sql/: named queries and numbered migrations, read once."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION_NAME = re.compile(r"^(\d{4})_\w+\.sql$")


def sql_dir() -> Path:
    """sql/ of the source tree, or its copy inside an installed wheel."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "sql", package.parent / "sql"):
        if (candidate / "queries.sql").is_file():
            return candidate
    raise FileNotFoundError(f"no sql/queries.sql beside {package}")


def parse_queries(text: str) -> dict[str, bytes]:
    """Split a file of ``-- name: x`` blocks into {name: statement}."""
    names = list(_NAME_LINE.finditer(text))
    queries: dict[str, bytes] = {}
    for current, following in zip(names, [*names[1:], None], strict=True):
        end = following.start() if following else len(text)
        body = "\n".join(
            line
            for line in text[current.end() : end].strip().splitlines()
            if not line.lstrip().startswith("--")
        ).strip()
        if current.group(1) in queries:
            raise ValueError(f"query {current.group(1)!r} is defined twice")
        queries[current.group(1)] = body.encode()
    return queries


@functools.cache
def queries() -> dict[str, bytes]:
    """Every named query of sql/queries.sql (as bytes: psycopg runs them as given)."""
    return parse_queries((sql_dir() / "queries.sql").read_text())


def query(name: str) -> bytes:
    return queries()[name]


@dataclass(frozen=True)
class Migration:
    version: str  # "0001"
    name: str  # "0001_meter_reads_electric.sql"
    statements: bytes

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.statements).hexdigest()


def migrations(directory: Path | None = None) -> list[Migration]:
    """The numbered migrations of sql/migrations, in order."""
    folder = directory or sql_dir() / "migrations"
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise ValueError(f"migration file {path.name!r} is not named NNNN_name.sql")
        found.append(Migration(match.group(1), path.name, path.read_bytes()))
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migration files share a number in {folder}")
    return found
