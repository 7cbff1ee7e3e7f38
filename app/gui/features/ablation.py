"""Deleting units from the live network (D), ablation curves and class selectivity on a
folder, and the units one class needs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.core.messages import (
    LOGITS,
    AblationCurves,
    AblationMode,
    ClassUnitCurves,
    Notice,
    NoticeLevel,
)
from app.core.requests import AblationRequest, ClassUnitsRequest, JobEvent
from app.gui import file_dialogs
from app.gui.actions import Action, radio
from app.gui.features.base import Handler, Window


class Ablation:
    def __init__(self, w: Window) -> None:
        self.w = w

    def connect(self) -> None:
        w, p, model = self.w, self.w.panes, self.w.model
        p.ablation.run_requested.connect(self.ask_ablation_folder)
        p.ablation.cancel_requested.connect(lambda: w.backend.cancel(AblationRequest.kind))
        p.unit.delete_clicked.connect(self.toggle_ablation)
        p.unit.restore_requested.connect(self.restore_units)
        p.unit.restore_all_requested.connect(self.restore_all)
        p.unit.ablation_mode_changed.connect(model.set_ablation_mode)
        model.ablation_changed.connect(self.update_display)
        model.ablation_mode_changed.connect(self.on_mode_changed)
        model.unit_requested.connect(self.on_unit_requested)

    def rows(self) -> Sequence[Action]:
        model = self.w.model
        return (
            Action("toggle_ablation", "Delete / restore selected unit", self.toggle_ablation,
                   "&Analysis", ("D",)),
            Action("restore_all", "Restore all deleted units", self.restore_all, "&Analysis"),
            *radio("ablation_mode", "&Analysis/Deleted units output", model.set_ablation_mode,
                   ((AblationMode.ZERO, "Zero"), (AblationMode.MEAN, "Running mean"))),
            Action("ablation", "Ablation curves on a folder…", self.ask_ablation_folder,
                   "&Analysis"),
            Action("class_units", "Units the explained class needs, on a folder…",
                   self.ask_class_units_folder, "&Analysis"),
        )

    def handlers(self) -> Mapping[type, Handler]:
        ablation = self.w.panes.ablation
        return {AblationCurves: ablation.set_curves, ClassUnitCurves: ablation.set_class_units,
                AblationRequest: self.on_job, ClassUnitsRequest: self.on_job}

    def on_job(self, event: JobEvent) -> None:
        self.w.panes.ablation.set_job(None if event.finished else event)

    def on_unit_requested(self, layer: str, unit: int) -> None:
        self.w.panes.ablation.set_unit(layer, unit)
        self.update_display()

    def toggle_ablation(self) -> None:
        """`d`: delete the selected unit from the live network, or restore it."""
        model = self.w.model
        deleted = model.toggle_ablation()
        if deleted is None:
            return
        name = f"{model.layer}:{model.unit}"
        self.w.notify(Notice(
            f"deleted {name} ({model.ablation_mode.value})" if deleted else f"restored {name}"
        ))

    def restore_all(self) -> None:
        if self.w.model.restore_all():
            self.w.notify(Notice("restored all deleted units"))

    def restore_units(self, units: object) -> None:
        assert isinstance(units, list)
        self.w.model.restore_units(units)

    def on_mode_changed(self, mode: AblationMode) -> None:
        if self.w.actions is not None:
            self.w.actions.set_checked(f"ablation_mode:{mode}")
        self.w.panes.unit.set_ablation_mode(mode)

    def update_display(self) -> None:
        model, p = self.w.model, self.w.panes
        rows = model.ablated_rows()
        p.unit.set_deleted(rows, model.is_ablated(model.layer, model.unit))
        p.grid.set_ablated(model.ablated_units(self.w.results.shown_layer()))
        if self.w.actions is not None:
            self.w.actions["restore_all"].setEnabled(bool(rows))

    def start_ablation(self, folder: str) -> None:
        """Ablation curves and class selectivity of the current layer on `folder`."""
        layer = self.w.model.layer
        if layer is None:
            self.w.notify(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        self.w.backend.submit(AblationRequest(folder, layer))
        self.w.panes.show_ablation()
        self.w.notify(Notice(f"ablation curves of {layer} on {folder}…"))

    def start_class_units(self, folder: str) -> None:
        """Which units of the current layer the explained class (else the top-1) needs."""
        model, r = self.w.model, self.w.results.last_result
        layer, cls = model.layer, model.explained_class
        if cls is None and r is not None and r.predictions:
            cls = r.predictions[0].index
        if layer is None or cls is None:
            self.w.notify(Notice("no prediction yet to pick a class from",
                                 NoticeLevel.WARNING))
            return
        self.w.backend.submit(ClassUnitsRequest(folder, layer, cls))
        self.w.panes.show_ablation()
        name = model.unit_name(LOGITS, cls) or f"class {cls}"
        self.w.notify(Notice(f"units of {layer} that {name!r} needs, on {folder}…"))

    def ask_ablation_folder(self) -> None:
        folder = file_dialogs.ask_ablation_folder(self.w.parent)
        if folder:
            self.start_ablation(folder)

    def ask_class_units_folder(self) -> None:
        folder = file_dialogs.ask_ablation_folder(self.w.parent)
        if folder:
            self.start_class_units(folder)
