"""Dissection: concept labels of a layer's units from a folder, the selected layer's cached
labels, and the labels written on the grid's tiles (L)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.core.messages import LayerConcepts, Notice, NoticeLevel
from app.core.requests import DissectRequest, JobEvent, LayerConceptsRequest
from app.gui import file_dialogs
from app.gui.actions import Action
from app.gui.features.base import Handler, Window


class Dissection:
    def __init__(self, w: Window) -> None:
        self.w = w
        self._concepts: LayerConcepts | None = None  # the selected layer's dissection
        self._tile_labels = False

    def connect(self) -> None:
        w, p = self.w, self.w.panes
        p.dissection.run_requested.connect(self.ask_folder)
        p.dissection.cancel_requested.connect(lambda: w.backend.cancel(DissectRequest.kind))
        p.dissection.unit_clicked.connect(w.model.select_unit)
        w.model.selection_changed.connect(self.on_selection_changed)

    def rows(self) -> Sequence[Action]:
        return (
            Action("dissect", "Dissect a folder (concept labels)…", self.ask_folder,
                   "&Analysis"),
            Action("concept_labels", "Concept labels on the grid", self.show_tile_labels,
                   "&View", ("L",), checkable=True,
                   help="Write each unit's concept (from a dissection) on its tile"),
        )

    def handlers(self) -> Mapping[type, Handler]:
        return {LayerConcepts: self.on_layer_concepts, DissectRequest: self.on_job}

    def on_selection_changed(self) -> None:
        layer = self.w.model.layer
        known = self._concepts.layer if self._concepts is not None else None
        if layer is not None and layer != known:
            self.w.backend.submit(LayerConceptsRequest(layer))  # the labels of the layer shown
        elif layer is not None:
            self.w.panes.dissection.show_unit(self.w.model.unit)

    def show_tile_labels(self, on: bool) -> None:
        """L: each unit's concept label on its grid tile, or none.

        With nothing to write (the shown layer has no dissection) it says so and stays
        off: a switch flipped in silence would turn the labels off at the next L."""
        why_not = self._no_labels_reason() if on else ""
        if why_not:
            self.w.notify(Notice(why_not, NoticeLevel.WARNING))
            on = False
            if self.w.actions is not None:
                self.w.actions.set_checked("concept_labels", False)
        self._tile_labels = on
        self._update_tile_labels()

    def _no_labels_reason(self) -> str:
        """Why L has no label to write on the shown layer's tiles ("" when it has some)."""
        c, layer = self._concepts, self.w.results.shown_layer() or self.w.model.layer
        if c is not None and c.layer == layer and c.labels():
            return ""
        if c is not None and c.layer == layer and c.units:
            return (f"no concept labels: no unit of {layer} detects a concept in its "
                    f"dissection ({c.dataset})")
        how = "Analysis → Dissect a folder… makes one"
        if c is not None and c.layer == layer and c.note:
            return f"no concept labels: {c.note}" + ("" if "Dissect" in c.note else f" {how}")
        return f"no concept labels: no dissection of {layer} yet. {how}"

    def on_layer_concepts(self, event: LayerConcepts) -> None:
        if event.layer != self.w.model.layer:
            return  # asked for a layer the user has left since
        self._concepts = event
        self.w.panes.dissection.set_concepts(event)
        self.w.panes.dissection.show_unit(self.w.model.unit)
        self._update_tile_labels()

    def _update_tile_labels(self) -> None:
        c = self._concepts
        on = self._tile_labels and c is not None and c.layer == self.w.results.shown_layer()
        self.w.panes.grid.set_tile_labels(c.labels() if on and c is not None else {})

    def on_job(self, event: JobEvent) -> None:
        self.w.panes.dissection.set_job(None if event.finished else event)
        if event.finished and event.ok:
            self.w.model.request_unit_again()  # the unit card's facts name its concept now

    def start_dissection(self, folder: str) -> None:
        """Concept labels of the current layer's units, on `folder`."""
        layer = self.w.model.layer
        if layer is None:
            self.w.notify(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        self.w.backend.submit(DissectRequest(folder, layer))
        self.w.panes.show_dissection()
        self.w.notify(Notice(f"dissecting {layer} on {folder}…"))

    def ask_folder(self) -> None:
        folder = file_dialogs.ask_dissection_folder(self.w.parent)
        if folder:
            self.start_dissection(folder)
