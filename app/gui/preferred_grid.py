"""G: the activation grid shows each unit's preferred image (from the cache) instead of its map.

Nothing is rendered for it: the backend lays out the layer's cached preferred images as a
`PreferredGrid`. At most one request per layer is in flight, and rebuilding reads every
cached image of the layer, so the grid is rebuilt only when it would change: a finished
render of a unit it lacks, a batch of a whole-layer render (at most every GRID_REFRESH_S),
the end of that render. Live results keep arriving meanwhile; they do not replace it.
"""

from __future__ import annotations

import time

from PyQt6.QtCore import QObject, pyqtSignal

from app.core.backend import LiveBackend
from app.core.messages import PreferredGrid
from app.core.requests import PreferredGridRequest
from app.core.results import Result
from app.gui.grid_view import ActivationGrid

GRID_REFRESH_S = 3.0  # the preferred-images grid follows a whole-layer render this often


class PreferredGridMode(QObject):
    """Owns what the grid shows while G is on; `changed` when the grid's content was replaced."""

    changed = pyqtSignal()  # preferred images shown, or activations back: marks and title follow

    def __init__(
        self, backend: LiveBackend, grid: ActivationGrid, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._backend = backend
        self._grid = grid
        self._enabled = False
        self._shown: PreferredGrid | None = None
        self._pending: str | None = None  # layer of the request in flight
        self._asked = 0.0  # monotonic time of the last refresh request
        self._render_layer = ""  # the layer "render whole layer" is working on

    @property
    def enabled(self) -> bool:
        return self._enabled

    def shown(self) -> PreferredGrid | None:
        """The preferred images on screen; None while G is off or they have not arrived."""
        return self._shown if self._enabled else None

    def set_enabled(self, enabled: bool, layer: str | None, result: Result | None) -> None:
        """Turn G on for `layer` (the layer on screen), or off: back to `result`'s mosaic."""
        self._enabled = enabled
        self._shown = None
        if enabled:
            if layer:
                self._request(layer)
        elif result is not None:
            self._grid.set_mosaic(result.mosaic, result.geometry)
            self.changed.emit()

    def follow_result(self, result: Result) -> bool:
        """A live result arrived: True when the grid keeps showing preferred images.

        A result of another layer than the one shown asks for that layer's images.
        """
        if not self._enabled:
            return False
        if self._shown is None or self._shown.layer != result.layer:
            self._request(result.layer)
        return True

    def on_grid(self, event: PreferredGrid, shown_layer: str | None) -> None:
        """The backend's answer; shown if G is still on and `shown_layer` is still its layer."""
        if self._pending == event.layer:
            self._pending = None
        if not self._enabled or event.layer != shown_layer:
            return  # switched off, or another layer is shown by now
        self._shown = event
        self._grid.set_mosaic(event.image, event.geometry)
        self.changed.emit()

    def on_request_ended(self) -> None:
        """The request finished without a grid (it failed): the next one may go out."""
        self._pending = None

    def on_render_started(self, layer: str) -> None:
        self._render_layer = layer

    def on_render_batch(self) -> None:
        """A batch of the whole-layer render is cached."""
        self.images_changed(self._render_layer)

    def on_render_finished(self) -> None:
        """The whole-layer render is over: show its final state."""
        self.images_changed(self._render_layer, force=True)

    def images_changed(self, layer: str, unit: int | None = None, force: bool = False) -> None:
        """New preferred images of `layer` are cached (of `unit`, or a batch of the layer).

        A unit already shown changes nothing; batches refresh at most every GRID_REFRESH_S
        (`force`: the render is over).
        """
        shown = self.shown()
        if shown is None or shown.layer != layer:
            return
        if unit is not None and unit in shown.rendered:
            return
        now = time.monotonic()
        if not force and unit is None and now - self._asked < GRID_REFRESH_S:
            return
        self._asked = now
        self._request(layer)

    def _request(self, layer: str) -> None:
        if self._pending == layer:
            return  # one request per layer in flight; the answer re-arms it
        self._pending = layer
        self._backend.submit(PreferredGridRequest(layer, self._grid.aspect()))
