"""Navigation and the view: moving through units and layers, freezing, the attribution
mode, normalization, colormap, overlay, attention, the help card, screenshots, pane
exports and quitting; and the panes' wiring to the view model that no job is behind."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from app.core.messages import AttributionMode, Normalization, Notice, NoticeLevel
from app.gui import file_dialogs
from app.gui.actions import EXPORTABLE_PANES, Action, radio
from app.gui.attribution_view import MODE_TEXT
from app.gui.colormaps import COLORMAP_NAMES, lookup_table, overlay_table
from app.gui.features.base import Handler, Window
from app.gui.snapshot import save_widget_png
from app.gui.view_model import ATTRIBUTION_CYCLE


class View:
    def __init__(self, w: Window) -> None:
        self.w = w

    def connect(self) -> None:
        w, p, model, results = self.w, self.w.panes, self.w.model, self.w.results
        p.layers.layer_chosen.connect(model.select_layer)
        p.grid.unit_hovered.connect(lambda _unit: results.update_hover())
        p.grid.unit_clicked.connect(model.select_unit)
        p.grid.aspect_changed.connect(model.set_grid_aspect)
        p.unit.position_clicked.connect(model.click_position)
        p.unit.tab_changed.connect(results.update_tab)
        p.predictions.class_clicked.connect(self.on_class_clicked)
        p.input.crop_hovered.connect(results.hover_input)
        w.preferred_grid.changed.connect(results.update_grid_marks)
        model.layers_changed.connect(lambda: p.layers.set_layers(model.layers))
        model.selection_changed.connect(self.on_selection_changed)
        model.frozen_changed.connect(lambda frozen: self._check("freeze", frozen))
        model.normalization_changed.connect(lambda n: self._check(f"normalization:{n}"))
        model.attribution_changed.connect(self.on_attribution_changed)
        model.attribution_at_changed.connect(lambda _at: results.update_position())
        model.classes_changed.connect(
            lambda: p.predictions.set_marked(model.explained_class, model.versus_class))

    def rows(self) -> Sequence[Action]:
        m = self.w.model
        return (
            Action("previous_unit", "Previous unit", m.move_unit, "&Navigate", ("Left",),
                   (0, -1)),
            Action("next_unit", "Next unit", m.move_unit, "&Navigate", ("Right",), (0, 1)),
            Action("unit_up", "Unit one row up", m.move_unit, "&Navigate", ("Up",), (-1, 0)),
            Action("unit_down", "Unit one row down", m.move_unit, "&Navigate", ("Down",),
                   (1, 0)),
            Action("previous_layer", "Previous layer", m.step_layer, "&Navigate",
                   ("PgUp", "U"), (-1,)),
            Action("next_layer", "Next layer", m.step_layer, "&Navigate", ("PgDown", "O"),
                   (1,)),
            Action("freeze", "Freeze frame", m.set_frozen, "&Navigate", ("F",), checkable=True),
            Action("cycle_attribution", "Cycle attribution mode", m.cycle_attribution,
                   "&Analysis", ("B",)),
            *radio("attribution", "&Analysis/Attribution", m.set_attribution,
                   ((mode, MODE_TEXT[mode].capitalize()) for mode in ATTRIBUTION_CYCLE)),
            *radio("normalization", "&View/Normalization", m.set_normalization,
                   ((Normalization.PER_CHANNEL, "Per channel"),
                    (Normalization.PER_LAYER, "Per layer"))),
            *radio("colormap", "&View/Colormap", self.set_colormap,
                   ((n, n) for n in COLORMAP_NAMES)),
            Action("overlay", "Unit overlay on input", self.w.panes.input.set_overlay_enabled,
                   "&View", checkable=True),
            Action("attention", "Attention on the input (transformers)", self.set_attention,
                   "&View", ("T",), checkable=True,
                   help="A transformer's attention from the token under the mouse (else the "
                        "class token), at the shown layer's block"),
            Action("attention_rollout", "Attention rollout instead of one block",
                   m.set_attention_rollout, "&View", checkable=True),
            Action("grayscale", "Grayscale input (colour or shape?)", self.set_grayscale,
                   "&View", ("K",), checkable=True,
                   help="Feed the network the frame in grayscale: which units lose their "
                        "response without colour"),
            Action("help", "Keys", self.w.panes.help.toggle, "&Help", ("H",),
                   help="Show / hide this help"),
            # Esc only closes the card (or drops the attributed position): on the window
            Action("escape", "Close help", self.on_escape, None, ("Esc",),
                   help="Close this help; else attribute the unit's maximum again"),
            Action("save_screenshot", "Save screenshot…", self.ask_screenshot_path, "&File",
                   ("Ctrl+S",), help="Save a screenshot of the window"),
            # also each pane's right-click menu (WindowLayout.add_export_actions)
            *(Action(f"export:{name}", f"{label}…", self.ask_export_path,
                     "&File/Export pane as PNG", args=(name,))
              for name, label in EXPORTABLE_PANES),
            Action("quit", "Quit", self.w.parent.close, "&File", ("Ctrl+Q",)),
        )

    def handlers(self) -> Mapping[type, Handler]:
        return {Notice: self.w.notify}

    def _check(self, name: str, on: bool = True) -> None:
        if self.w.actions is not None:
            self.w.actions.set_checked(name, on)

    def on_selection_changed(self) -> None:
        self.w.panes.layers.set_current(self.w.model.layer)
        self.w.results.update_selection()

    def on_attribution_changed(self, mode: AttributionMode) -> None:
        self._check(f"attribution:{mode}")
        self.w.results.update_attribution_mode()
        self.w.notify(Notice(f"attribution: {MODE_TEXT[mode]}"))

    def on_class_clicked(self, index: int, versus: bool) -> None:
        if versus:
            self.w.model.pick_versus(index)
        elif self.w.panes.showing_blocks():
            # the Why tab explains the class at the layer the user is on: the class unit
            # (logits) has no positions to explain, and the way back is many PgUps
            self.w.model.explain_class(index)
        else:
            self.w.model.pick_class(index)

    def set_colormap(self, name: str) -> None:
        if self.w.actions is not None and f"colormap:{name}" in self.w.actions:
            self.w.actions.set_checked(f"colormap:{name}")
        lut, p = lookup_table(name), self.w.panes
        p.grid.set_lut(lut)
        p.unit.set_lut(lut)
        p.card.set_lut(lut)
        p.input.set_lut(overlay_table(name))

    def set_attention(self, on: bool) -> None:
        self.w.model.set_attention(on)
        if on:
            self.w.notify(Notice("attention: the token under the mouse on the input (else "
                                 "the class token), at the shown layer's block"))

    def set_grayscale(self, on: bool) -> None:
        self.w.model.set_grayscale(on)
        self.w.notify(Notice(
            "grayscale input: the network sees the frame without colour; units that "
            "respond to colour go quiet (k again: colour)" if on else "colour input again"))

    def on_escape(self) -> None:
        if self.w.panes.help.isVisible():
            self.w.panes.help.hide()
        else:
            self.w.model.set_attribution_at(None)

    def export_pane(self, name: str, path: str | Path) -> Path:
        """One pane (actions.EXPORTABLE_PANES) as a PNG, atomically; raises OSError. A centre
        tab is shown first: it is what the user asked to save."""
        self.w.panes.reveal(name)
        return save_widget_png(self.w.panes.exportable(name), path)

    def ask_export_path(self, name: str) -> None:
        path = file_dialogs.ask_png_path(self.w.parent, f"Save the {name} pane",
                                         f"deepvis-{name}.png")
        if path:
            self._saved(lambda: self.export_pane(name, path))

    def ask_screenshot_path(self) -> None:
        path = file_dialogs.ask_screenshot_path(self.w.parent)
        if path:
            self._saved(lambda: save_widget_png(self.w.parent, path))

    def _saved(self, save: Callable[[], Path]) -> None:
        try:
            saved = save()
        except OSError as exc:
            self.w.notify(Notice(str(exc), NoticeLevel.ERROR))
        else:
            self.w.notify(Notice(f"saved {saved}"))
