"""The window's dissection views against the numpy backend: the Dissection tab, concept
labels on the grid, the unit card's label and its live mask, and running a dissection."""

from __future__ import annotations

import numpy as np
import pytest
from fake_backend import (
    DEFAULT_LAYER,
    activations,
    concept_threshold,
    layer_concepts,
)
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QFileDialog

from app.core.masks import concept_mask
from app.core.requests import DissectRequest, JobEvent, JobState, LayerConceptsRequest

pytest.importorskip("pytestqt")


def test_the_dissection_tab_summarizes_the_layer_and_lists_its_detectors(ui, backend):
    assert LayerConceptsRequest(DEFAULT_LAYER) in backend.asked(LayerConceptsRequest)
    ui.wait_until(ui.dissection_showing_summary)
    rows = ui.dissection_rows()
    expected = sorted((u for u in layer_concepts(DEFAULT_LAYER).units if u.interpretable),
                      key=lambda u: -u.iou)
    assert rows == [f"unit {u.unit} · {u.label} (color) · IoU {u.iou:.3f}" for u in expected]
    assert "10 of 240 units detect a concept · 5 distinct concepts" in ui.dissection_info()
    ui.click_dissection_row(2)
    assert backend.views[-1].unit == expected[2].unit


def test_l_writes_concept_labels_on_the_tiles_of_the_shown_layer(ui, backend):
    ui.wait_until(ui.dissection_showing_summary)
    assert ui.grid_tile_labels() == {}
    ui.press(Qt.Key.Key_L)
    assert ui.grid_tile_labels() == layer_concepts(DEFAULT_LAYER).labels()
    ui.press(Qt.Key.Key_PageDown)  # a layer never dissected: no labels, the pane says so
    ui.wait_until(lambda: "No dissection of" in ui.dissection_info())
    ui.wait_for_results(ui.results_shown() + 2)
    assert ui.grid_tile_labels() == {}
    ui.press(Qt.Key.Key_L)
    assert ui.grid_tile_labels() == {}


def test_the_unit_card_names_the_concept_and_masks_it_on_the_input(ui, backend):
    ui.press(Qt.Key.Key_C)  # unit 0 detects red in the fake dissection
    card = ui.card()
    ui.wait_until(lambda: "Concept: red (color), IoU 0.200" in card.facts_text())
    ui.wait_until(lambda: ui.concept_mask_image() is not None)
    crop = ui.last_result().crop
    expected = concept_mask(activations(DEFAULT_LAYER)[0], concept_threshold(DEFAULT_LAYER, 0),
                            min(crop[2], 224))
    np.testing.assert_array_equal(ui.concept_mask_image(), expected)
    assert 0 < expected.mean() < 1
    assert f"mask {100 * expected.mean():.0f}%" in card.map_box.heading.text()
    assert f"{100 * expected.mean():.1f} % of the input" in card.map_box.heading.toolTip()
    ui.press(Qt.Key.Key_Right)  # unit 1 detects nothing: no mask
    ui.wait_until(lambda: ui.concept_mask_image() is None)
    ui.press(Qt.Key.Key_C)
    ui.press(Qt.Key.Key_Left)
    ui.wait_for_results(ui.results_shown() + 2)
    assert ui.concept_mask_image() is None  # only while the card is shown


def test_analysis_dissect_runs_on_a_folder_with_progress_and_cancel(ui, backend, monkeypatch,
                                                                     tmp_path):
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    ui.trigger("dissect")
    assert backend.asked(DissectRequest) == [DissectRequest(str(tmp_path), DEFAULT_LAYER)]
    assert ui.showing_dissection_tab()
    ui.wait_until(ui.dissection_progress_visible)
    assert ui.action_enabled("cancel:dissect")
    ui.click_dissection_cancel()
    assert "dissect" in backend.called("cancel")
    ui.wait_until(lambda: not ui.dissection_progress_visible())
    backend.emit(JobEvent(DissectRequest(str(tmp_path), DEFAULT_LAYER), 1, 1,
                          "dissection of x done", state=JobState.OK))
    ui.wait_refreshes(2)
    assert not ui.dissection_progress_visible()


def test_l_without_a_dissection_says_how_to_make_one_and_stays_off(ui, backend):
    ui.wait_until(ui.dissection_showing_summary)
    ui.press(Qt.Key.Key_PageDown)  # a layer never dissected
    ui.wait_until(lambda: "No dissection of" in ui.dissection_info())
    ui.wait_for_results(ui.results_shown() + 2)
    ui.press(Qt.Key.Key_L)
    notice = ui.notice_text()
    assert "No dissection of _blocks.10._project_conv yet" in notice
    assert "Dissect a folder" in notice  # how to make one
    assert not ui.action_checked("concept_labels")
    assert ui.grid_tile_labels() == {}
    # back on the dissected layer, one L writes the labels (the switch was left off)
    ui.press(Qt.Key.Key_PageUp)
    ui.wait_until(ui.dissection_showing_summary)
    ui.wait_for_results(ui.results_shown() + 2)
    ui.press(Qt.Key.Key_L)
    assert ui.action_checked("concept_labels")
    assert ui.grid_tile_labels() == layer_concepts(DEFAULT_LAYER).labels()


def _strip_of(photo: np.ndarray, tiles: int = 4, side: int = 112) -> np.ndarray:
    """A strip as the dissection writes one: `tiles` squares of a real photo side by side."""
    import cv2

    square = cv2.resize(photo[:min(photo.shape[:2]), :min(photo.shape[:2])], (side, side),
                        interpolation=cv2.INTER_AREA)
    return np.concatenate([np.roll(square, 17 * i, axis=1) for i in range(tiles)], axis=1)


def test_a_units_strip_shows_under_the_list_decoded_as_written(ui, backend, monkeypatch,
                                                               tmp_path):
    """NetDissect's picture of a unit: its top images with where it fires, from the file the
    dissection wrote; a unit without one, or with an unreadable one, says so."""
    import dataclasses

    import cv2
    import fake_backend
    from photos import chelsea, coffee

    strips = {0: _strip_of(chelsea()), 4: _strip_of(coffee())}
    for unit, strip in strips.items():
        assert cv2.imwrite(str(tmp_path / f"unit_{unit:04d}.png"), strip[:, :, ::-1])
    (tmp_path / "unit_0008.jpg").write_bytes(b"not a jpeg")
    plain = fake_backend.layer_concepts

    def with_strips(layer: str):
        concepts = plain(layer)
        paths = {u: str(tmp_path / f"unit_{u:04d}.png") for u in strips}
        paths[8] = str(tmp_path / "unit_0008.jpg")
        return dataclasses.replace(concepts, units=tuple(
            dataclasses.replace(u, strip=paths.get(u.unit, "")) for u in concepts.units))

    monkeypatch.setattr(fake_backend, "layer_concepts", with_strips)
    ui.press(Qt.Key.Key_PageDown)  # another layer and back: the labels are asked again
    ui.wait_until(lambda: "No dissection of" in ui.dissection_info())
    ui.press(Qt.Key.Key_PageUp)
    ui.wait_until(ui.dissection_showing_summary)
    for row, unit in ((0, 0), (1, 4)):  # the best detectors first: units 0 and 4
        ui.click_dissection_row(row)
        ui.wait_until(lambda: ui.dissection_strip() is not None)
        assert ui.dissection_strip_text().startswith(f"Unit {unit} · ")
        assert "its top images, where it fires outlined" in ui.dissection_strip_text()
        np.testing.assert_array_equal(ui.dissection_strip(), strips[unit])
    ui.click_dissection_row(2)  # unit 8: its file is no image
    ui.wait_until(lambda: "could not be read" in ui.dissection_strip_text())
    assert ui.dissection_strip() is None
    ui.click_dissection_row(3)  # unit 12: no strip saved
    assert ui.dissection_strip_text().endswith("no top images saved")
    assert ui.dissection_strip() is None
