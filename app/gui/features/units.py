"""The selected unit's dataset patches and preferred image, scans of a folder for top
patches, whole-layer renders and the grid of preferred images (G)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.core.messages import Notice, NoticeLevel, Patch, PreferredGrid, PreferredImage, UnitPatches
from app.core.requests import (
    JobEvent,
    PreferredGridRequest,
    PreferredImageRequest,
    RenderLayerRequest,
    ScanRequest,
)
from app.gui import file_dialogs
from app.gui.actions import Action
from app.gui.features.base import Handler, Window


class Units:
    def __init__(self, w: Window) -> None:
        self.w = w

    def connect(self) -> None:
        w, p = self.w, self.w.panes
        w.model.unit_requested.connect(self.on_unit_requested)
        p.patches.scan_requested.connect(self.ask_scan_folder)
        p.patches.patch_clicked.connect(self.show_patch)
        p.preferred.cancel_render.connect(lambda: w.backend.cancel(PreferredImageRequest.kind))
        p.preferred.render_layer_requested.connect(self.start_render_layer)
        p.preferred.cancel_render_layer.connect(
            lambda: w.backend.cancel(RenderLayerRequest.kind))

    def rows(self) -> Sequence[Action]:
        return (
            Action("scan", "Scan folder for top patches…", self.ask_scan_folder, "&Analysis"),
            Action("render_layer", "Render preferred images of this layer",
                   self.start_render_layer, "&Analysis"),
            Action("preferred_grid", "Preferred images in the grid", self.show_preferred_grid,
                   "&View", ("G",), checkable=True,
                   help="Grid shows each unit's preferred image / its activations"),
        )

    def handlers(self) -> Mapping[type, Handler]:
        return {UnitPatches: self.on_patches, PreferredImage: self.on_preferred_image,
                PreferredGrid: self.on_grid, PreferredImageRequest: self.on_render,
                RenderLayerRequest: self.on_render_layer, ScanRequest: self.on_scan,
                PreferredGridRequest: self.on_grid_request}

    # -- asking
    def on_unit_requested(self, layer: str, unit: int) -> None:
        """A new selection: clear the old unit's patches and image and ask for this one's."""
        self.w.panes.patches.set_loading(layer, unit)
        self.w.panes.preferred.set_waiting(layer, unit)
        self.w.backend.submit(PreferredImageRequest(layer, unit))

    def start_scan(self, folder: str) -> None:
        """Scan `folder` for the top patches of every unit of the current layer."""
        layer = self.w.model.layer
        if layer is None:
            self.w.notify(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        self.w.backend.submit(ScanRequest(folder, layer))
        self.w.notify(Notice(f"scanning {folder} for {layer}…"))

    def ask_scan_folder(self) -> None:
        folder = file_dialogs.ask_scan_folder(self.w.parent)
        if folder:
            self.start_scan(folder)

    def start_render_layer(self) -> None:
        """Render (and cache) the preferred image of every unit of the current layer."""
        layer = self.w.model.layer
        if layer is None:
            return
        self.w.backend.submit(RenderLayerRequest(layer))
        self.w.preferred_grid.on_render_started(layer)
        self.w.notify(Notice(f"rendering every unit of {layer}…"))

    def show_preferred_grid(self, enabled: bool) -> None:
        results = self.w.results
        self.w.preferred_grid.set_enabled(enabled, results.shown_layer(), results.last_result)

    def show_patch(self, patch: object) -> None:
        assert isinstance(patch, Patch)
        self.w.panes.patch_dialog.show_patch(patch)

    # -- answers
    def _selected(self, layer: str, unit: int) -> bool:
        return (layer, unit) == (self.w.model.layer, self.w.model.unit)

    def on_patches(self, event: UnitPatches) -> None:
        if self._selected(event.layer, event.unit):  # else an answer for a unit left since
            self.w.panes.patches.set_dataset(event.patches, event.note, event.dataset)

    def on_preferred_image(self, event: PreferredImage) -> None:
        if self._selected(event.layer, event.unit):
            self.w.panes.preferred.show_image(event)
        if event.done:
            self.w.preferred_grid.images_changed(event.layer, event.unit)

    def on_grid(self, event: PreferredGrid) -> None:
        self.w.preferred_grid.on_grid(event, self.w.results.shown_layer())

    def on_render(self, event: JobEvent) -> None:
        if event.finished:
            self.w.panes.preferred.set_render_running(False)

    def on_render_layer(self, event: JobEvent) -> None:
        preferred = self.w.panes.preferred
        if not event.finished:
            if event.done:
                self.w.preferred_grid.on_render_batch()
            preferred.set_layer_job(event)
            return
        preferred.set_layer_job(None)
        self.w.preferred_grid.on_render_finished()
        if event.ok:
            self.w.model.request_unit_again()  # the new cache has this unit's image

    def on_scan(self, event: JobEvent) -> None:
        if event.finished and event.ok:
            self.w.model.request_unit_again()  # the new cache has this unit's patches

    def on_grid_request(self, event: JobEvent) -> None:
        if not event.finished:
            return
        self.w.preferred_grid.on_request_ended()
        if not event.ok:  # quiet otherwise: the grid itself is the news
            self.w.notify(Notice(f"{PreferredGridRequest.label}: {event.text}",
                                 NoticeLevel.WARNING))
