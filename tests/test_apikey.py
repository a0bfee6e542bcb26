"""The generated API key: created once, private, shared by every process."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gridlens.apikey import ensure_api_key, key_file, key_matches
from gridlens.settings import Settings


def test_a_missing_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    key = ensure_api_key(settings)
    assert len(key) >= 32
    assert key_file(tmp_path).stat().st_mode & 0o777 == 0o600
    assert ensure_api_key(settings) == key


def test_concurrent_starts_agree_on_one_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: ensure_api_key(settings), range(8)))
    assert len(keys) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["api_key"]


def test_a_configured_key_wins_and_nothing_is_written(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(data_dir=tmp_path), api_key="configured-0123456789")
    assert ensure_api_key(settings) == "configured-0123456789"
    assert not key_file(tmp_path).exists()


def test_keys_compare_exactly() -> None:
    assert key_matches("abc", "abc")
    assert not key_matches("abc", "abd") and not key_matches("ab", "abc")
