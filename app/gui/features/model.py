"""The model: the list of models (Model menu), a checkpoint (.pt2 program, or a state_dict
into a named architecture), loading it, and what the window does once it is ready or
failed. The layer and unit given on the command line apply to the first model only."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.core.messages import ModelFailed, ModelReady, Notice, NoticeLevel
from app.gui import file_dialogs
from app.gui.actions import Action
from app.gui.features.base import Handler, Window

log = logging.getLogger(__name__)


class Model:
    def __init__(self, w: Window, initial_layer: str | None, initial_unit: int | None) -> None:
        self.w = w
        self._initial_layer = initial_layer
        self._initial_unit = initial_unit
        self._model_label: str | None = None  # the status bar's model text before a load

    def connect(self) -> None:
        self.w.panes.architecture_dialog.chosen.connect(self.load_model)

    def rows(self) -> Sequence[Action]:
        return (Action("open_checkpoint", "Open checkpoint…", self.ask_checkpoint, "&Model"),)

    def handlers(self) -> Mapping[type, Handler]:
        return {ModelReady: self.on_model_ready, ModelFailed: self.on_model_failed}

    def load_model(self, spec: str) -> None:
        """A model was asked for: say so until it is ready."""
        self.w.notify(Notice(f"loading model {spec}…"))
        status = self.w.status
        if self._model_label is None:  # a second load before the first ended: keep the first
            self._model_label = status.model_text()
        status.set_model_text(f"loading {Path(spec).name or spec}")
        self.w.backend.load_model(spec)

    def on_model_failed(self, event: ModelFailed) -> None:
        """The error notice came just before; the status bar names the model still running.

        With none running (the bundled fallback failed too) no frame will come: the panes
        say why instead of "Loading model…"."""
        before, self._model_label = self._model_label, None
        status, name = self.w.status, self.w.model_name
        if name and before and not before.startswith("loading"):
            status.set_model_text(before)
        elif name:
            status.set_model_text(name)
        else:
            status.set_model_text("no model (loading failed)")
            self.w.say_in_panes(f"No model: {event.reason}")
            self.w.gave_up(event.reason)

    def on_model_ready(self, event: ModelReady) -> None:
        w = self.w
        w.model_name = event.name
        self._model_label = None
        names = [info.name for info in event.layers]
        wanted = self._initial_layer
        if wanted and wanted not in names:
            w.notify(Notice(f"layer {wanted!r} is not in {event.name}; showing "
                            f"{event.default_layer}", NoticeLevel.WARNING))
        if wanted not in names:
            wanted = event.default_layer if event.default_layer in names else None
        if wanted is None and names:
            wanted = names[0]
        unit = self._initial_unit
        self._initial_layer = None
        self._initial_unit = None
        w.model.set_class_names(event.class_names)
        w.model.set_layers(event.layers, wanted, unit)
        if w.actions is not None:
            for name in w.actions.group("model"):
                w.actions.set_checked(name, name == f"model:{event.name}")
        w.status.set_model_text(f"{event.name} · {event.device}")
        w.parent.setWindowTitle(f"DeepVis Live — {event.name}")
        w.say_in_panes(w.source_problem or "Waiting for frames…")
        w.notify(Notice(f"{event.name} ready on {event.device}: {len(event.layers)} "
                        f"layers, {event.num_classes} classes"))

    def ask_checkpoint(self) -> None:
        """A .pt2 program loads as it is; a state_dict needs its architecture named first."""
        path = file_dialogs.ask_checkpoint(self.w.parent)
        if not path:
            return
        if file_dialogs.is_program(path):
            self.load_model(path)
            return
        try:
            names = self.w.backend.architectures()
        except Exception as exc:  # a broken registry must not take the window down
            log.exception("architectures failed")
            self.w.notify(Notice(f"cannot list architectures: {exc}", NoticeLevel.ERROR))
            return
        self.w.panes.architecture_dialog.ask(path, names)
