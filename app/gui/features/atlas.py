"""The activation atlas: made on a folder (Analysis menu), the newest cached one of the shown
layer loaded when the Atlas tab opens, a cell clicked selected as a unit of the atlas's
direction layer (`LAYER@atlasN`), and the live frame placed on it.

A cell is a unit like any other once selected: the unit card, the preferred image and
deletion (D) take it without this module. The live placement costs the worker only while
the tab shows an atlas: the view carries `AtlasView` then, and its default otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PyQt6.QtWidgets import QFileDialog

from app.core.atlas_messages import AtlasReady
from app.core.messages import ModelReady, Notice, NoticeLevel
from app.core.requests import AtlasRequest, CachedAtlasRequest, JobEvent, SessionAtlasRequest
from app.core.view import AtlasView
from app.gui.actions import Action
from app.gui.features.base import Handler, Window

DEFAULT_GRID = 20
SEPARATOR = "@"  # a direction layer's name: SOURCE@TAG


def source_layer(layer: str) -> str:
    """The model layer an atlas of `layer` is of: a direction layer's source."""
    source, sep, tag = layer.rpartition(SEPARATOR)
    return source if sep and source and tag else layer


class Atlas:
    def __init__(self, w: Window) -> None:
        self.w = w
        self.atlas: AtlasReady | None = None
        self._asked: set[str] = set()  # layers whose cached atlas was asked for

    def connect(self) -> None:
        p = self.w.panes
        p.atlas.cell_clicked.connect(self.select_cell)
        p.atlas.run_requested.connect(self.ask_folder)
        p.centre_tab_changed.connect(lambda _index: self.on_tab_changed())
        self.w.model.selection_changed.connect(self.on_tab_changed)

    def rows(self) -> Sequence[Action]:
        return (
            Action("atlas", "Activation atlas of this layer on a folder…", self.ask_folder,
                   "&Analysis", help="The layer's activations over a folder, laid out on a "
                   "map of cells; each cell a unit of a direction layer"),
            Action("session_atlas", "Atlas of this session", self.make_of_session,
                   "&Analysis", help="The layer's atlas of the frames seen so far (one a "
                   "second): where the camera has been, as the network saw it"),
        )

    def handlers(self) -> Mapping[type, Handler]:
        return {AtlasReady: self.on_atlas, AtlasRequest: self.on_job,
                SessionAtlasRequest: self.on_job, ModelReady: self.on_model_ready}

    # -- making one ------------------------------------------------------------------------
    def ask_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self.w.parent, "Folder of images to make this layer's atlas of")
        if folder:
            self.make(folder)

    def make(self, folder: str, grid: int = DEFAULT_GRID) -> None:
        """The atlas of the shown layer (a direction layer's source) on `folder`."""
        layer = self.w.model.layer
        if layer is None:
            self.w.notify(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        layer = source_layer(layer)
        self.w.backend.submit(AtlasRequest(folder, layer, grid))
        self.w.panes.show_atlas()
        self.w.notify(Notice(f"making the atlas of {layer} on {folder}…"))

    def make_of_session(self, grid: int = DEFAULT_GRID) -> None:
        """The atlas of the shown layer (a direction layer's source) of the frames seen."""
        layer = self.w.model.layer
        if layer is None:
            self.w.notify(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        layer = source_layer(layer)
        self.w.backend.submit(SessionAtlasRequest(layer, grid))
        self.w.panes.show_atlas()
        self.w.notify(Notice(f"making the atlas of {layer} of the frames seen so far…"))

    def on_job(self, event: JobEvent) -> None:
        return None  # the bar, Cancel and the notice come from the request's declarations

    def on_model_ready(self, _event: ModelReady) -> None:
        self.atlas = None  # another model's atlas means nothing here
        self._asked.clear()
        self.w.panes.atlas.clear()
        self.w.model.set_part(AtlasView())

    # -- showing one -------------------------------------------------------------------------
    def on_atlas(self, event: AtlasReady) -> None:
        self.atlas = event
        self._asked.add(event.layer)
        self.w.panes.atlas.show_atlas(event)
        self.on_tab_changed()

    def on_tab_changed(self) -> None:
        """While the tab shows an atlas the worker places each frame on it; opening the tab
        on a layer with no atlas shown asks for a cached one (quietly)."""
        p, a = self.w.panes, self.atlas
        showing = p.showing_atlas()
        layer = self.w.model.layer
        if showing and layer is not None:
            source = source_layer(layer)
            if (a is None or a.layer != source) and source not in self._asked:
                self._asked.add(source)
                self.w.backend.submit(CachedAtlasRequest(source))
        live = showing and a is not None
        self.w.model.set_part(AtlasView(a.layer, a.directions_folder) if live and a is not None
                              else AtlasView())
        if not live:
            p.atlas.set_lit(None)

    def select_cell(self, index: int) -> None:
        """Cell `index` as the selected unit of the atlas's direction layer."""
        a = self.atlas
        if a is None:
            return
        if not self.w.model.select(a.direction_layer, index):
            self.w.notify(Notice(f"{a.direction_layer} is not among the layers yet: it joins "
                                 "them once the atlas job has ended", NoticeLevel.WARNING))
