"""Why this prediction (W: the building blocks, their icons, the path-integrated values),
the unit card's and the grid tint's tabs (C, A), and the jobs on the frozen frame (This
frame: accentuation X, inversion V, activation grid M). The tabs' side effects live in
`CentreTabs`; this module wires them and shows what comes back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from app.core.messages import FrameImage, GroupIcons, IntegratedExplanation, Notice, UnitIcons
from app.core.requests import IntegratedRequest, JobEvent
from app.gui.actions import Action
from app.gui.centre_tabs import CentreTabs
from app.gui.features.base import Handler, Window
from app.gui.frame_view import seen_crop


class Explain:
    def __init__(self, w: Window) -> None:
        self.w = w
        self.tabs = CentreTabs(w.backend, w.model, w.panes, w.results, w.notify, w.parent)

    def connect(self) -> None:
        w, p, tabs = self.w, self.w.panes, self.tabs
        if w.actions is not None:
            tabs.bind(w.actions)
        p.centre_tab_changed.connect(tabs.on_tab_changed)
        p.blocks.unit_clicked.connect(w.model.select_unit)
        p.blocks.overlay_changed.connect(w.results.set_blocks_overlay)
        p.blocks.integrated_requested.connect(tabs.on_integrated_requested)
        p.frame_pane.accentuate_requested.connect(self.accentuate)
        p.frame_pane.invert_requested.connect(self.invert)
        p.frame_pane.grid_requested.connect(self.activation_grid)
        p.centre_tab_changed.connect(lambda _index: self.show_seed())
        w.results.result_shown.connect(lambda _count: self.show_seed())
        w.results.icons_wanted.connect(tabs.on_icons_wanted)
        w.results.group_icons_wanted.connect(tabs.on_group_icons_wanted)
        w.model.frozen_changed.connect(self.on_frozen_changed)

    def rows(self) -> Sequence[Action]:
        tabs = self.tabs
        return (
            Action("accentuate", "Accentuate the unit in this frame", self.accentuate,
                   "&Analysis", ("X",),
                   help="What in this frame the unit responds to, as a picture"),
            Action("invert", "Invert this frame from 3 layers", self.invert, "&Analysis",
                   ("V",), help="What a few layers keep of this frame, rebuilt from their codes"),
            Action("activation_grid", "Activation grid of this frame", self.activation_grid,
                   "&Analysis", ("M",), help="Each position's activation vector as a picture"),
            Action("unit_card", "Unit card", tabs.toggle_unit_card, "&View", ("C",),
                   checkable=True, help="Show / hide the unit card: the selected unit at a glance"),
            Action("why", "Why this prediction", tabs.toggle_why, "&View", ("W",),
                   checkable=True, help="Show / hide the building blocks: channels, groups, "
                   "dictionary, for a class"),
            Action("attribution_tint", "Tint the grid by attribution to the class",
                   tabs.set_grid_tint, "&View", ("A",), checkable=True,
                   help="Tiles orange / blue by how much each channel raises / lowers the class"),
        )

    def handlers(self) -> Mapping[type, Handler]:
        p = self.w.panes
        return {FrameImage: p.frame_pane.on_frame_image,
                GroupIcons: lambda e: p.blocks.set_group_icons(e.layer, e.icons),
                UnitIcons: lambda e: p.blocks.set_icons(e.layer, e.icons),
                IntegratedExplanation: self.on_integrated,
                IntegratedRequest: self.on_integrated_job}

    # -- This frame: each job freezes the frame first, and says so (f goes live again)
    def accentuate(self) -> None:
        self._freezing(self.tabs.accentuate, "accentuation")

    def invert(self) -> None:
        self._freezing(self.tabs.invert, "inversion")

    def activation_grid(self) -> None:
        self._freezing(self.tabs.activation_grid, "activation grid")

    def _freezing(self, start: Callable[[], None], what: str) -> None:
        was_frozen = self.w.model.frozen
        start()
        if self.w.model.frozen and not was_frozen:
            self.w.notify(Notice(f"frame frozen for the {what}: press f to go live again"))

    def show_seed(self) -> None:
        """While This frame is shown, its first picture is the frame as the model saw it
        (a frozen one keeps what its job started from)."""
        pane, r = self.w.panes.frame_pane, self.w.results.last_result
        if r is None or not pane.isVisible():
            return
        if self.w.model.frozen and pane.seed_tile.picture() is not None:
            return
        pane.show_seed(seen_crop(r.frame.image, r.crop))

    def on_integrated(self, event: IntegratedExplanation) -> None:
        self.w.panes.blocks.set_integrated(event)
        self.w.results.update_blocks()

    def on_integrated_job(self, event: JobEvent) -> None:
        if event.finished:
            self.w.panes.blocks.set_integrated_running(False)

    def on_frozen_changed(self, frozen: bool) -> None:
        if not frozen:  # a new frame: the integrated values were of the old one
            self.w.panes.blocks.set_integrated(None)

