"""The unit card (C): the selected unit at a glance, its extras job while it is shown,
and the unit report (Ctrl+R) saved from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from app.core.messages import (
    ColourDependence,
    Notice,
    NoticeLevel,
    Patch,
    PatchAttributions,
    PreferredVariant,
    UnitFacts,
    UnitPatches,
)
from app.core.requests import UnitCardRequest
from app.gui import file_dialogs
from app.gui.actions import Action
from app.gui.features.base import Handler, Window
from app.gui.frame_view import frame_name, seen_crop
from app.gui.unit_report import save_unit_report


class Card:
    def __init__(self, w: Window) -> None:
        self.w = w

    def connect(self) -> None:
        self.w.model.unit_requested.connect(self.on_unit_requested)
        self.w.panes.card.patch_clicked.connect(self.show_patch)

    def rows(self) -> Sequence[Action]:
        return (Action("save_unit_report", "Save unit report…", self.ask_report_path, "&File",
                       ("Ctrl+R",), help="Save the unit card as one PNG and one HTML page"),)

    def handlers(self) -> Mapping[type, Handler]:
        card = self.w.panes.card
        return {UnitPatches: card.on_patches, PreferredVariant: card.on_preferred,
                PatchAttributions: card.on_patch_attributions, UnitFacts: self.on_facts,
                ColourDependence: card.on_colour_dependence}

    def on_unit_requested(self, layer: str, unit: int) -> None:
        p = self.w.panes
        p.card.set_unit(layer, unit, self.w.model.unit_name(layer, unit))
        if p.showing_card():
            self.w.backend.submit(UnitCardRequest(layer, unit))

    def on_facts(self, event: UnitFacts) -> None:
        self.w.panes.card.on_facts(event)
        self.w.results.set_concept_threshold(event.layer, event.unit, event.concept_threshold)

    def show_patch(self, patch: object) -> None:
        assert isinstance(patch, Patch)
        self.w.panes.patch_dialog.show_patch(patch)

    def save_report(self, path: str | Path) -> tuple[Path, Path]:
        """The unit card as `path` (PNG) and the same name .html; raises OSError."""
        r = self.w.results.last_result
        frame = None if r is None else (seen_crop(r.frame.image, r.crop),
                                        frame_name(r.frame.source, r.frame.index))
        return save_unit_report(self.w.panes.card, self.w.model_name or "model",
                                self.w.model.channels(), path, frame)

    def ask_report_path(self) -> None:
        """Ctrl+R: the card is shown first (it is what is saved), then a name is asked."""
        model = self.w.model
        if model.layer is None:
            self.w.notify(Notice("no unit to report on yet", NoticeLevel.WARNING))
            return
        if not self.w.panes.showing_card():
            self.w.panes.show_card()
        path = file_dialogs.ask_png_path(
            self.w.parent, "Save unit report (PNG, and an HTML page beside it)",
            f"deepvis-{model.layer}-unit{model.unit}.png")
        if not path:
            return
        try:
            png, page = self.save_report(path)
        except OSError as exc:
            self.w.notify(Notice(str(exc), NoticeLevel.ERROR))
        else:
            self.w.notify(Notice(f"saved {png} and {page.name}"))

