"""sql/: named queries and numbered migrations."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridlens.sqlfiles import migrations, parse_queries, queries


def test_named_blocks_are_split_and_comments_dropped() -> None:
    parsed = parse_queries("-- name: one\n-- why\nSELECT 1\n\n-- name: two\nSELECT\n  2\n")
    assert parsed == {"one": b"SELECT 1", "two": b"SELECT\n  2"}


def test_a_query_name_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: one\nSELECT 1\n-- name: one\nSELECT 2\n")


def test_the_project_queries_load() -> None:
    assert {"insert_reads", "ping", "migrations_lock"} <= set(queries())


def test_migrations_come_in_numeric_order() -> None:
    versions = [migration.version for migration in migrations()]
    assert versions == sorted(versions) and versions[:2] == ["0001", "0002"]


def test_a_badly_named_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_x.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match=r"NNNN_name\.sql"):
        migrations(tmp_path)


def test_two_migrations_with_one_number_are_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1")
    (tmp_path / "0001_b.sql").write_text("SELECT 2")
    with pytest.raises(ValueError, match="share a number"):
        migrations(tmp_path)
