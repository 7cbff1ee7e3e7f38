"""Concepts: learning a layer's concept dictionary on a folder (Analysis menu), the concept
layer joining the layer list when it is done, and the concepts' names (renamed here, stored
with the dictionary by the session; a dissection label names a concept the user has not).

A concept layer is a layer like any other for the rest of the window: its units are the
concepts, so the grid, hover, the unit card and deletion (D) take them without this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PyQt6.QtWidgets import QFileDialog, QInputDialog

from app.core.messages import ConceptNames, LayerConcepts, LayersChanged, Notice, NoticeLevel
from app.core.requests import (
    ConceptNamesRequest,
    ConceptsRequest,
    JobEvent,
    RenameConceptRequest,
)
from app.gui.actions import Action
from app.gui.features.base import Handler, Window

CONCEPTS_KIND = "concepts"  # LayerInfo.kind of a concept layer
DEFAULT_K = 32
DEFAULT_METHOD = "nmf"


def default_name(unit: int) -> str:
    return f"concept {unit}"


class Concepts:
    def __init__(self, w: Window) -> None:
        self.w = w
        self._stored: dict[str, tuple[str, ...]] = {}  # names stored with each dictionary
        self._labels: dict[str, dict[int, str]] = {}  # a dissection's labels of its concepts

    def connect(self) -> None:
        self.w.model.selection_changed.connect(self.on_selection_changed)

    def rows(self) -> Sequence[Action]:
        return (
            Action("learn_concepts", "Learn concepts of this layer on a folder…",
                   self.ask_folder, "&Analysis",
                   help="Learn K directions of the layer from a folder: a concept layer"),
            Action("rename_concept", "Rename concept…", self.ask_rename, "&Analysis",
                   help="Name the selected concept (stored with its dictionary)"),
        )

    def handlers(self) -> Mapping[type, Handler]:
        return {ConceptsRequest: self.on_job, LayersChanged: self.on_layers_changed,
                ConceptNames: self.on_names, LayerConcepts: self.on_layer_concepts}

    # -- queries ---------------------------------------------------------------------------
    def is_concept_layer(self, layer: str | None) -> bool:
        return any(i.name == layer and i.kind == CONCEPTS_KIND for i in self.w.model.layers)

    def names(self, layer: str) -> tuple[str, ...]:
        """What the window calls each concept: its stored name, or its dissection label while
        the user has not named it."""
        labels = self._labels.get(layer, {})
        return tuple(labels.get(u, n) if n == default_name(u) else n
                     for u, n in enumerate(self._stored.get(layer, ())))

    # -- learning ----------------------------------------------------------------------------
    def ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self.w.parent, "Folder of images to learn this layer's concepts on")
        if folder:
            self.learn(folder)

    def learn(self, folder: str, k: int = DEFAULT_K, method: str = DEFAULT_METHOD) -> None:
        """Learn `k` concepts of the shown layer on `folder`."""
        layer = self.w.model.layer
        if layer is None:
            self.w.notify(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        if self.is_concept_layer(layer):
            self.w.notify(Notice(f"{layer} is a concept layer: choose one of the model's "
                                 "layers to learn concepts of", NoticeLevel.WARNING))
            return
        self.w.backend.submit(ConceptsRequest(folder, layer, k, method))
        self.w.notify(Notice(f"learning {k} concepts ({method}) of {layer} on {folder}…"))

    def on_job(self, event: JobEvent) -> None:
        return None  # the bar, Cancel and the notice come from the request's declarations

    def on_layers_changed(self, event: LayersChanged) -> None:
        w = self.w
        w.model.update_layers(event.layers)
        w.model.select_layer(event.added)  # what the user asked for: show it
        w.panes.layers.set_current(w.model.layer)

    # -- names -------------------------------------------------------------------------------
    def on_selection_changed(self) -> None:
        layer = self.w.model.layer
        if layer is not None and layer not in self._stored and self.is_concept_layer(layer):
            self.w.backend.submit(ConceptNamesRequest(layer))

    def on_names(self, event: ConceptNames) -> None:
        self._stored[event.layer] = event.names
        self._apply(event.layer)

    def on_layer_concepts(self, event: LayerConcepts) -> None:
        if self.is_concept_layer(event.layer):
            self._labels[event.layer] = event.labels()
            self._apply(event.layer)

    def _apply(self, layer: str) -> None:
        self.w.model.set_unit_names(layer, self.names(layer))
        if layer == self.w.model.layer:
            self.w.results.update_selection()  # the unit's title and hover name it now

    def ask_rename(self) -> None:
        layer, unit = self.w.model.layer, self.w.model.unit
        if not self.is_concept_layer(layer) or layer is None:
            self.w.notify(Notice("select a concept of a concept layer to rename it",
                                 NoticeLevel.WARNING))
            return
        current = self.w.model.unit_name(layer, unit) or default_name(unit)
        text, ok = QInputDialog.getText(self.w.parent, "Rename concept",
                                        f"Name of concept {unit} of {layer}:", text=current)
        if ok:
            self.rename(text)

    def rename(self, name: str) -> None:
        """Name the selected concept (an empty name restores the default)."""
        layer = self.w.model.layer
        if layer is not None and self.is_concept_layer(layer):
            self.w.backend.submit(RenameConceptRequest(layer, self.w.model.unit, name))
