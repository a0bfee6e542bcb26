"""Putting a day's hour rows at their meters' places by key (api/kpi_judge.py), without
servers; test_kpi judges real days end to end."""

from __future__ import annotations

import numpy as np

from api.kpi_judge import key_places


def test_hour_rows_go_to_the_place_of_their_meters_key() -> None:
    meter_keys = np.array([30, -10, 20], dtype=np.int64)  # meters in meter_id order
    hour_keys = np.array([20, 30, 30, -10, 20], dtype=np.int64)
    places = key_places(meter_keys, hour_keys)
    assert places is not None and places.tolist() == [2, 0, 0, 1, 2]


def test_two_meters_of_one_key_ask_for_another_seed() -> None:
    meter_keys = np.array([7, 3, 7], dtype=np.int64)
    assert key_places(meter_keys, np.array([3, 7], dtype=np.int64)) is None
