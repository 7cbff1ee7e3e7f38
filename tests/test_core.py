"""Pure core: the latest-wins slot, mosaic geometry and tiling, unit specs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.core.slot import LatestSlot
from app.core.tiling import GridGeometry, grid_geometry, normalize_channels
from app.core.units import UnitSpecError, parse_units
from tests.tiling_reference import tile_channels


def test_slot_keeps_only_newest_and_counts_drops():
    slot: LatestSlot[int] = LatestSlot()
    assert slot.take() is None
    for i in range(5):
        slot.put(i)
    assert slot.take() == 4
    assert slot.dropped == 4
    assert slot.take() is None
    slot.put(7)
    assert slot.take() == 7
    assert slot.dropped == 4
    assert slot.delivered == 2


def test_slot_wait_take_wakes_on_put_and_on_close():
    slot: LatestSlot[str] = LatestSlot()
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(slot.wait_take(5.0)))
    t.start()
    slot.put("frame")
    t.join(2.0)
    assert got == ["frame"]
    t2 = threading.Thread(target=lambda: got.append(slot.wait_take(5.0)))
    t2.start()
    slot.close()
    t2.join(2.0)
    assert not t2.is_alive() and got[-1] is None


def test_slot_listener_called_after_put():
    slot: LatestSlot[int] = LatestSlot()
    seen: list[int | None] = []
    slot.listener = lambda: seen.append(slot.peek())
    slot.put(3)
    assert seen == [3]


def test_grid_geometry_covers_all_channels_with_no_empty_row():
    for c in (1, 3, 16, 32, 40, 96, 1280):
        g = grid_geometry(c, 7, 7)
        assert g.rows * g.cols >= c
        assert (g.rows - 1) * g.cols < c  # the last row is used
    g = grid_geometry(1280, 7, 7, pad=1)
    assert (g.rows, g.cols) == (36, 36)
    assert g.height == 36 * 8 - 1 and g.width == 36 * 8 - 1


def test_tile_channels_places_each_unit_in_its_tile():
    c, h, w = 5, 3, 4
    maps = np.stack([np.full((h, w), 10 * (k + 1), np.uint8) for k in range(c)])
    g = grid_geometry(c, h, w, pad=1)
    mosaic = tile_channels(maps, g)
    assert mosaic.shape == (g.height, g.width)
    for k in range(c):
        y, x = g.tile_origin(k)
        assert np.all(mosaic[y : y + h, x : x + w] == 10 * (k + 1))
        assert g.unit_at(y + h - 1, x + w - 1) == k
    # padding and the unused cells read as no unit and hold the fill value
    assert g.unit_at(h, 0) is None
    assert mosaic[h, 0] == 0
    assert g.unit_at(-1, 0) is None
    assert g.unit_at(g.height + 5, 0) is None


def test_unit_at_ignores_cells_past_the_last_channel():
    g = grid_geometry(5, 2, 2, pad=1)
    last_cell = g.rows * g.cols - 1
    assert last_cell >= 5
    y, x = divmod(last_cell, g.cols)
    assert g.unit_at(y * 3, x * 3) is None


def test_neighbour_moves_by_rows_and_clamps():
    g = GridGeometry(channels=10, rows=3, cols=4, tile_h=2, tile_w=2)
    assert g.neighbour(0, 0, 1) == 1
    assert g.neighbour(0, 0, -1) == 0
    assert g.neighbour(9, 0, 1) == 9
    assert g.neighbour(1, 1, 0) == 5
    assert g.neighbour(9, 1, 0) == 9  # no row below
    assert g.neighbour(7, 1, 0) == 7  # the cell below (11) does not exist
    assert g.neighbour(5, -1, 0) == 1


def test_normalize_channels_per_channel_and_per_layer():
    a = np.array([[[0.0, 1.0], [2.0, 4.0]], [[-1.0, -1.0], [-1.0, -1.0]]], np.float32)
    per_ch = normalize_channels(a, per_channel=True)
    assert per_ch[0].tolist() == [[0, 64], [128, 255]]
    assert per_ch[1].tolist() == [[0, 0], [0, 0]]  # constant map: no division by zero
    per_layer = normalize_channels(a, per_channel=False)
    assert per_layer[1, 0, 0] == 0 and per_layer[0, 1, 1] == 255
    assert per_layer[0, 0, 0] == 51  # (0 - -1) / 5 * 255 rounded


@pytest.mark.parametrize(("spec", "expected"), [
    ("3", [3]), ("0-3", [0, 1, 2, 3]), ("1,4,9", [1, 4, 9]), ("0-2, 7, 1", [0, 1, 2, 7]),
])
def test_parse_units(spec, expected):
    assert parse_units(spec) == expected


@pytest.mark.parametrize("spec", ["", "a", "3-1", "-2", "1,,2", "5"])
def test_parse_units_rejects_bad_specs(spec):
    with pytest.raises(UnitSpecError):
        parse_units(spec, limit=5)
