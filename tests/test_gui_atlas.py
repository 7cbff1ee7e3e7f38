"""The Atlas tab against the numpy backend: an atlas shows its cells, the class filter dims
the others, a click selects that cell's unit of the direction layer, opening the tab asks
for a cached atlas of the shown layer, and the live frame's placement lights cells."""

from __future__ import annotations

import numpy as np
import pytest
from fake_backend import DEFAULT_LAYER, LAYERS, FakeBackend
from gui_driver import WindowDriver
from PyQt6.QtCore import QPoint, QPointF, Qt

from app.core.atlas_messages import AtlasCell, AtlasReady
from app.core.messages import LayerInfo
from app.core.requests import (
    AtlasRequest,
    CachedAtlasRequest,
    JobEvent,
    JobState,
    SessionAtlasRequest,
)
from app.core.results import AtlasRecord
from app.core.view import AtlasView
from app.gui.atlas_view import CELL_PX, DIMMED

pytest.importorskip("pytestqt")

CELLS_LAYER = f"{DEFAULT_LAYER}@atlas6"
FOLDER = "/cache/directions/m/layer/atlas6-abc"
LABELS = ("tabby cat", "coffee mug", "tabby cat", "rocket", "coffee mug")


def atlas(icons: bool = True) -> AtlasReady:
    cells = tuple(
        AtlasCell(x, y, count, label, 0.5 + i,
                  np.full((24, 24, 3), 40 * i, np.uint8) if icons else None,
                  examples=tuple(np.full((16, 16, 3), 9 * k, np.uint8) for k in range(i)))
        for i, ((x, y, count), label) in enumerate(zip(
            ((0, 0, 9), (3, 1, 4), (5, 2, 12), (1, 4, 3), (4, 5, 6)), LABELS, strict=True)))
    return AtlasReady(DEFAULT_LAYER, 6, cells, CELLS_LAYER, FOLDER, "/cache/atlas.png", 4)


def finish(backend: FakeBackend, message: AtlasReady) -> None:
    request = AtlasRequest("/photos", DEFAULT_LAYER, 6)
    backend.emit(JobEvent(request, 1, 1, "atlas done", result=message, state=JobState.OK))


def with_cells_layer() -> tuple[LayerInfo, ...]:
    info = next(i for i in LAYERS if i.name == DEFAULT_LAYER)
    cells = LayerInfo(CELLS_LAYER, (len(LABELS), *info.shape[1:]), "concepts")
    return tuple(x for i in LAYERS for x in ((i, cells) if i.name == DEFAULT_LAYER else (i,)))


def test_the_menu_asks_for_an_atlas_of_the_shown_layer(ui, backend, monkeypatch, tmp_path):
    from PyQt6.QtWidgets import QFileDialog

    assert (ui.menu_path("atlas") or "").startswith("&Analysis")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    ui.trigger("atlas")
    assert backend.asked(AtlasRequest) == [AtlasRequest(str(tmp_path), DEFAULT_LAYER, 20)]
    assert ui.showing_atlas_tab()
    # the atlas of this session: the frames seen, of the shown layer (a direction layer's
    # source)
    assert (ui.menu_path("session_atlas") or "").startswith("&Analysis")
    ui.trigger("session_atlas")
    assert backend.asked(SessionAtlasRequest) == [SessionAtlasRequest(DEFAULT_LAYER, 20)]


def test_an_atlas_shows_its_cells_the_filter_dims_the_others_and_a_click_selects_the_unit(
        ui, backend, qtbot):
    pane = ui.atlas_pane()
    ui.show_atlas_tab()
    finish(backend, atlas())
    ui.wait_until(lambda: pane.atlas is not None)
    assert pane.shown_cells() == (0, 1, 2, 3, 4)
    assert CELLS_LAYER in pane.title.text()
    # the filter offers the labels present, most cells first, and keeps only that class
    choices = [pane.filter.itemText(i) for i in range(pane.filter.count())]
    assert choices == ["all classes", "coffee mug", "tabby cat", "rocket"]
    pane.filter.setCurrentText("tabby cat")
    assert pane.shown_cells() == (0, 2)
    assert [round(item.opacity(), 2) for item in pane._items] == [1.0, DIMMED, 1.0, DIMMED,
                                                                  DIMMED]
    pane.filter.setCurrentText("all classes")
    assert pane.shown_cells() == (0, 1, 2, 3, 4)
    # hover: the cell large, with its label and count
    pane.show_cell(2)
    assert "tabby cat" in pane.hover_text.text() and "12 samples" in pane.hover_text.text()
    assert pane.hover_icon.pixmap() is not None and not pane.hover_icon.pixmap().isNull()
    assert pane.shown_examples() == 2  # cell 2's two top samples
    pane.show_cell(0)
    assert pane.shown_examples() == 0 and "top samples" not in pane.hover_text.text()
    # a click on cell 3 (the rocket) through the view selects unit 3 of the direction layer;
    # one on an empty place of the grid selects nothing
    ui.window.view_model.update_layers(with_cells_layer())
    canvas = pane.canvas
    empty = canvas.mapFromScene(QPointF(2.5 * CELL_PX, 2.5 * CELL_PX))
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=empty)
    assert ui.window.view_model.layer == DEFAULT_LAYER
    at = canvas.mapFromScene(pane.cell_centre(3))
    # a drag that ends on the cell is a pan, not a click
    qtbot.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, pos=at + QPoint(30, 30))
    qtbot.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, pos=at)
    assert ui.window.view_model.layer == DEFAULT_LAYER
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=at)
    ui.wait_until(lambda: ui.window.view_model.layer == CELLS_LAYER)
    assert ui.window.view_model.unit == 3
    assert backend.views[-1].layer == CELLS_LAYER and backend.views[-1].unit == 3


def test_a_click_before_the_layer_is_listed_says_so(ui, backend):
    ui.show_atlas_tab()
    finish(backend, atlas())
    ui.wait_until(lambda: ui.atlas_pane().atlas is not None)
    ui.window.features.atlas.select_cell(1)
    assert ui.window.view_model.layer != CELLS_LAYER
    assert "not among the layers" in ui.notices()[-1].text


def test_opening_the_tab_asks_for_the_cached_atlas_and_places_frames_on_it_while_shown(
        qtbot):
    backend = FakeBackend(live=False)  # a still image: a frame only after a view change
    ui = WindowDriver.open(qtbot, backend)
    ui.wait_for_results()
    assert backend.asked(CachedAtlasRequest) == []
    ui.show_atlas_tab()
    ui.wait_until(lambda: backend.asked(CachedAtlasRequest) == [
        CachedAtlasRequest(DEFAULT_LAYER)])
    # no atlas yet: the worker places nothing
    assert backend.views[-1].part(AtlasView) == AtlasView()
    backend.emit(JobEvent(CachedAtlasRequest(DEFAULT_LAYER), 1, 1, "cached", result=atlas(
        icons=False), state=JobState.OK))
    ui.wait_until(lambda: backend.views[-1].part(AtlasView) == AtlasView(DEFAULT_LAYER,
                                                                          FOLDER))
    pane = ui.atlas_pane()
    assert pane.shown_cells() == (0, 1, 2, 3, 4)  # shaded squares while there are no icons
    # a frame's placement on this atlas lights the cells it fell into
    weights = np.array([0.0, 2.0, 0.0, 0.5, 0.0], np.float32)
    cell_of = np.array([[1, 1, 3], [1, -1, 3], [1, 1, 1]], np.int16)
    record = AtlasRecord(DEFAULT_LAYER, FOLDER, weights, cell_of, 0.3)
    ui.show_result(ui.last_result().with_record(record))
    assert pane.lit_cells() == (1, 3)
    assert pane._rings[1].opacity() > pane._rings[3].opacity()
    # the mouse over the input's top right marks the cell that position fell into
    ui.hover_crop(0.9, 0.1)
    assert pane.marked == 3 and "rocket" in pane.hover_text.text()
    ui.hover_crop(0.1, 0.9)
    assert pane.marked == 1 and "coffee mug" in pane.hover_text.text()
    ui.hover_crop(0.5, 0.5)  # a position of zero activation
    assert pane.marked == -1
    # the same atlas again, its icons rendered: a still frame sends no new placement, so
    # the cells stay lit
    backend.emit(JobEvent(CachedAtlasRequest(DEFAULT_LAYER), 1, 1, "icons", result=atlas(),
                          state=JobState.OK))
    ui.wait_until(lambda: pane.atlas is not None and pane.atlas.cells[0].icon is not None)
    assert pane.lit_cells() == (1, 3)
    # a placement on another atlas's cells lights nothing
    other = AtlasRecord(DEFAULT_LAYER, "/elsewhere", weights, np.zeros((3, 3), np.int16), 0.3)
    ui.show_result(ui.last_result().with_record(other))
    assert pane.lit_cells() == ()
    # another tab: the worker stops placing, and the tab is not asked again on return
    ui.show_activations_tab()
    ui.wait_until(lambda: backend.views[-1].part(AtlasView) == AtlasView())
    ui.show_atlas_tab()
    ui.wait_until(lambda: backend.views[-1].part(AtlasView) == AtlasView(DEFAULT_LAYER,
                                                                          FOLDER))
    assert len(backend.asked(CachedAtlasRequest)) == 1
    # another model: its atlas is gone from the tab and from the view, and asked for anew
    backend.emit(FakeBackend.model_ready("resnet18"))
    ui.wait_until(lambda: pane.atlas is None)
    assert pane.shown_cells() == () and backend.views[-1].part(AtlasView) == AtlasView()
    ui.wait_until(lambda: len(backend.asked(CachedAtlasRequest)) == 2)
