"""The building-blocks stage on screen: the Why tab, the input's overlay (spatial attribution
or neuron groups), the grid's tint by channel attribution, and the icons the tab asks for."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from app.core.messages import LOGITS
from app.core.results import BuildingBlocks, Result
from app.gui.blocks_view import Overlay, groups_rgba, spatial_rgba
from app.gui.preferred_grid import PreferredGridMode
from app.gui.view_model import ViewModel
from app.gui.window_layout import WindowLayout

IconsWanted = Callable[[str, object], None]  # (layer, units or (k, C) directions)


class BlocksPresenter:
    def __init__(self, model: ViewModel, panes: WindowLayout, preferred: PreferredGridMode,
                 icons_wanted: IconsWanted, group_icons_wanted: IconsWanted) -> None:
        self._model = model
        self._panes = panes
        self._preferred = preferred
        self._icons_wanted = icons_wanted
        self._group_icons_wanted = group_icons_wanted
        self.overlay = Overlay.SPATIAL  # what the building blocks draw on the input
        self.tint = False  # the grid's tiles tinted by attribution
        self._icons_asked: tuple[str, tuple[int, ...]] | None = None
        self._groups_asked: tuple[str, tuple[tuple[int, ...], ...]] | None = None
        self._hover: tuple[float, float] | None = None  # the mouse over the crop, fractions

    def show(self, result: Result, e: BuildingBlocks | None) -> None:
        p = self._panes
        if self.tint:  # the grid shows this layer's channels: tint them by attribution
            ok = e is not None and e.layer == result.layer and not self._preferred.shown()
            p.grid.set_tile_tint(e.channels if ok and e is not None else None)
        if e is None or not p.showing_blocks():
            p.input.set_explanation_overlay(None, result.crop)
            if p.showing_blocks() and e is None:
                g = result.geometry
                p.blocks.show_unexplained(result.layer, g.tile_h == 1 == g.tile_w)
            return
        names = self._model.unit_name
        target = names(LOGITS, e.target) or f"class {e.target}"
        versus = "" if e.versus is None else names(LOGITS, e.versus) or f"class {e.versus}"
        p.blocks.set_explanation(e, target, versus)
        self._show_cell(e.spatial.shape)
        rgba = (spatial_rgba(e.spatial) if self.overlay == Overlay.SPATIAL else
                groups_rgba(e.group_spatial) if self.overlay == Overlay.GROUPS else None)
        p.input.set_explanation_overlay(rgba, result.crop)
        # the groups' own icons once per new set of groups (their top units say which)
        groups = (e.layer, tuple(tuple(int(u) for u in np.argsort(-g, kind="stable")[:3])
                                 for g in e.group_channels))
        if groups != self._groups_asked:
            self._groups_asked = groups
            self._group_icons_wanted(e.layer, e.group_channels)
        wanted = (e.layer, p.blocks.icon_units())
        if wanted != self._icons_asked:  # ask once per new set of channels named
            self._icons_asked = wanted
            self._icons_wanted(e.layer, wanted[1])

    def set_tint(self, on: bool) -> None:
        self.tint = on
        if not on:
            self._panes.grid.set_tile_tint(None)

    def hover(self, result: Result, at: tuple[float, float] | None) -> None:
        """The mouse over the input's crop: the dictionary of the layer cell under it."""
        self._hover = at
        e = result.record(BuildingBlocks)
        if e is not None:
            self._show_cell(e.spatial.shape)

    def _show_cell(self, shape: tuple[int, ...]) -> None:
        if self._hover is None:
            self._panes.blocks.clear_cell()
            return
        h, w = shape
        fx, fy = self._hover
        self._panes.blocks.show_cell(min(int(fy * h), h - 1), min(int(fx * w), w - 1))
