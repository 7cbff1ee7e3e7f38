"""The window's concepts against the numpy backend: learning a layer's concepts from the
Analysis menu, the concept layer joining the layer list beside its source, renaming a
concept and its name in the unit title and hover, and deleting a concept with D."""

from __future__ import annotations

import pytest
from fake_backend import DEFAULT_LAYER, FakeBackend, activations, layer_info
from gui_driver import WindowDriver
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QFileDialog, QInputDialog

from app.core.requests import ConceptNamesRequest, ConceptsRequest, RenameConceptRequest
from app.core.view import DeletionView
from app.gui.layer_list import layer_row_text

pytest.importorskip("pytestqt")

CONCEPTS = f"{DEFAULT_LAYER}@nmf32"


def learned(ui: WindowDriver, backend: FakeBackend, monkeypatch, folder: str) -> None:
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: folder)
    ui.trigger("learn_concepts")
    ui.wait_until(lambda: ui.window.view_model.layer == CONCEPTS)


def test_analysis_learns_concepts_and_the_layer_list_shows_them_beside_the_source(
        ui, backend, monkeypatch, tmp_path):
    assert (ui.menu_path("learn_concepts") or "").startswith("&Analysis")
    assert not ui.action_enabled("cancel:concepts_learn")
    rows_before = ui.layer_rows()
    learned(ui, backend, monkeypatch, str(tmp_path))
    assert backend.asked(ConceptsRequest) == [ConceptsRequest(str(tmp_path), DEFAULT_LAYER,
                                                              32, "nmf")]
    rows = ui.layer_rows()
    source = rows_before.index(next(r for r in rows_before if r.startswith(DEFAULT_LAYER + " ")))
    assert rows[source + 1] == layer_row_text(layer_info(CONCEPTS))
    assert rows[source + 1].endswith("concepts") and len(rows) == len(rows_before) + 1
    assert ui.current_layer_row() == source + 1
    # the window asks the worker for it, and shows its 32 maps
    assert backend.views[-1].layer == CONCEPTS
    ui.wait_until(lambda: ui.last_result().layer == CONCEPTS)
    ui.wait_until(lambda: (g := ui.grid_geometry()) is not None and g.channels == 32)
    assert any("concepts: " in n.text and "learned" in n.text for n in ui.notices())
    # learning concepts of a concept layer is refused in the window, with a reason
    ui.window.features.concepts.learn(str(tmp_path))
    assert len(backend.asked(ConceptsRequest)) == 1
    assert "is a concept layer" in ui.notices()[-1].text


def test_a_renamed_concept_names_the_unit_title_and_the_hover(ui, backend, monkeypatch,
                                                               tmp_path):
    learned(ui, backend, monkeypatch, str(tmp_path))
    assert ConceptNamesRequest(CONCEPTS) in backend.asked(ConceptNamesRequest)
    ui.select_unit(3)
    ui.wait_until(lambda: "concept 3" in ui.unit_title())
    ui.hover_unit(3)
    ui.wait_until(lambda: "concept 3" in ui.hover_text())
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("striped fur", True))
    ui.trigger("rename_concept")
    assert backend.asked(RenameConceptRequest) == [RenameConceptRequest(CONCEPTS, 3,
                                                                        "striped fur")]
    ui.wait_until(lambda: "striped fur" in ui.unit_title())
    ui.wait_until(lambda: "striped fur" in ui.hover_text())  # at the next frame
    # on a plain layer there is nothing to rename: the window says so and asks nothing
    ui.select_layer(DEFAULT_LAYER)
    ui.trigger("rename_concept")
    assert len(backend.asked(RenameConceptRequest)) == 1
    assert "select a concept" in ui.notices()[-1].text


def test_d_deletes_the_selected_concept_live(ui, backend, monkeypatch, tmp_path):
    learned(ui, backend, monkeypatch, str(tmp_path))
    ui.select_unit(5)
    ui.press(Qt.Key.Key_D)
    ui.wait_until(lambda: backend.views[-1].part(DeletionView).ablated == ((CONCEPTS, (5,)),))
    assert activations(CONCEPTS).shape[0] == 32


def test_a_dissection_label_names_a_concept_nobody_named(ui, backend, monkeypatch, tmp_path):
    from app.core.messages import ConceptUnit, LayerConcepts

    learned(ui, backend, monkeypatch, str(tmp_path))
    ui.select_unit(3)
    ui.rename_concept("whiskers")
    ui.wait_until(lambda: "whiskers" in ui.unit_title())
    units = (ConceptUnit(2, "fur", "texture", 0.12, True),
             ConceptUnit(3, "grass", "texture", 0.09, True),
             ConceptUnit(4, "sky", "texture", 0.01, False))  # under the minimum IoU
    backend.emit(LayerConcepts(CONCEPTS, "photos", units, 2, 2))
    ui.wait_refreshes(2)
    assert "whiskers" in ui.unit_title()  # the user's name wins over the label
    ui.select_unit(2)
    ui.wait_until(lambda: "fur" in ui.unit_title())
    ui.select_unit(4)
    ui.wait_until(lambda: "concept 4" in ui.unit_title())
