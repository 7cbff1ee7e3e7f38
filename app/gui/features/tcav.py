"""Concept tests: TCAV on the user's folders, and the bias audit (Analysis menu).

"Test a concept (TCAV)…" asks, in one form, for the folder of concept images, a folder of
random images, a folder of images of the class, and the class; the session runs the test
at the shown layer (a direction layer's source) and the answer comes back as a notice (the
score against random CAVs' and its p-value). The concept's CAV then joins the layer list as
a one-unit direction layer and is shown: its live map is where the concept is on the
camera, and the unit card, its preferred image and deletion (D) take it like any unit.

"Audit a folder for bias…" takes a folder sorted into groups of class folders
(`folder/<group>/<class>/*.jpg`); its report page opens when written, and each group's
direction joins the layers as a unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from PyQt6.QtCore import QUrl
from PyQt6.QtGui import QDesktopServices
from PyQt6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from app.core.messages import Notice, NoticeLevel, ReportWritten
from app.core.requests import AuditRequest, TcavRequest
from app.gui.actions import Action
from app.gui.features.base import Handler, Window

DEFAULT_RUNS = 10


def source_layer(layer: str) -> str:
    """The model layer a shown layer stands on (`a.b@nmf32` → `a.b`)."""
    return layer.rpartition("@")[0] or layer


class FolderField(QWidget):
    """A folder path typed or picked."""

    def __init__(self, title: str, parent: QWidget) -> None:
        super().__init__(parent)
        self.title = title
        self.edit = QLineEdit(self)
        pick = QPushButton("Choose…", self)
        pick.clicked.connect(self._pick)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(pick)

    def _pick(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, self.title, self.edit.text())
        if folder:
            self.edit.setText(folder)

    def text(self) -> str:
        return self.edit.text().strip()


class TcavForm(QDialog):
    """The test's four questions, and how many CAVs to train."""

    def __init__(self, parent: QWidget | None, layer: str, classes: Sequence[str],
                 guess: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Test a concept at {layer} (TCAV)")
        form = QFormLayout(self)
        self.concept = FolderField("Images that show the concept", self)
        self.random = FolderField("Random images (anything but the concept)", self)
        self.examples = FolderField("Images of the class", self)
        self.target = QComboBox(self)
        self.target.setEditable(True)  # a name or an index; the long list is searchable
        self.target.addItems(list(classes))
        if guess:  # what the network calls this frame: the class a user most likely asks about
            self.target.setCurrentText(guess)
        self.runs = QSpinBox(self)
        self.runs.setRange(2, 100)
        self.runs.setValue(DEFAULT_RUNS)
        form.addRow("Concept images", self.concept)
        form.addRow("Random images", self.random)
        form.addRow("Class images", self.examples)
        form.addRow("Class", self.target)
        form.addRow("Runs (CAVs against random sets)", self.runs)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.resize(560, self.sizeHint().height())


class ConceptTests:
    def __init__(self, w: Window) -> None:
        self.w = w
        self.last_report: str | None = None

    def connect(self) -> None:
        return None

    def rows(self) -> Sequence[Action]:
        return (
            Action("tcav", "Test a concept (TCAV)…", self.ask_tcav, "&Analysis",
                   help="Does a class depend on a concept you show with images? Its CAV "
                        "becomes a unit"),
            Action("audit", "Audit a folder for bias…", self.ask_audit, "&Analysis",
                   help="Gaps between groups of images, and the concepts behind them"),
            Action("open_report", "Open the last audit report", self.open_last_report,
                   "&Analysis", help="The bias audit's page, in the browser"),
        )

    def handlers(self) -> Mapping[type, Handler]:
        return {ReportWritten: self.on_report}

    # -- TCAV --------------------------------------------------------------------------------
    def ask_tcav(self) -> None:
        layer = self.w.model.layer
        if layer is None:
            self.w.notify(Notice("no model loaded yet", NoticeLevel.WARNING))
            return
        shown = self.w.results.last_result
        guess = shown.predictions[0].label if shown is not None and shown.predictions else ""
        form = TcavForm(self.w.parent, source_layer(layer), self.w.model.class_names, guess)
        if form.exec() == QDialog.DialogCode.Accepted:
            self.test(form.concept.text(), form.random.text(), form.examples.text(),
                      form.target.currentText(), form.runs.value())

    def test(self, concept: str, random: str, examples: str, target: str,
             runs: int = DEFAULT_RUNS) -> None:
        """TCAV of `concept` for class `target` at the shown layer (its source, for a
        direction layer)."""
        layer = self.w.model.layer
        missing = [what for what, text in (("concept", concept), ("random", random),
                                           ("class", examples), ("target", target))
                   if not text.strip()]
        if layer is None or missing:
            self.w.notify(Notice("a concept test needs the concept, random and class "
                                 "folders and a class", NoticeLevel.WARNING))
            return
        at = source_layer(layer)
        self.w.backend.submit(TcavRequest(concept, random, examples, target.strip(), (at,),
                                          runs))
        self.w.notify(Notice(f"testing {Path(concept).name!r} for {target.strip()} at {at}…"))

    # -- the audit ---------------------------------------------------------------------------
    def ask_audit(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self.w.parent, "Folder of groups, each of class folders (folder/group/class/…)")
        if folder:
            self.audit(folder)

    def audit(self, folder: str) -> None:
        layer = self.w.model.layer
        layers = () if layer is None else (source_layer(layer),)
        self.w.backend.submit(AuditRequest(folder, (), layers))
        self.w.notify(Notice(f"auditing {folder}…"))

    def on_report(self, event: ReportWritten) -> None:
        self.last_report = event.path
        self.open_report(event.path)

    def open_last_report(self) -> None:
        if self.last_report is None:
            self.w.notify(Notice("no audit report yet: Analysis → Audit a folder for bias…",
                                 NoticeLevel.WARNING))
            return
        self.open_report(self.last_report)

    def open_report(self, path: str) -> None:
        """The page in the user's browser (a test replaces this)."""
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(path)):
            self.w.notify(Notice(f"audit report: {path}"))
