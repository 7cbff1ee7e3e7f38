"""The file dialogs the window opens: each returns a path, or None when cancelled.

Qt's static dialogs (native where the platform has them) behind one function per question,
so the window never spells a filter or a caption, and tests replace `QFileDialog`'s
methods to answer them. A state_dict holds weights but not the network they belong to:
`ArchitectureDialog` asks for it, window-modal but without blocking the GUI thread, and
answers with the `ARCH:PATH` spec the engine loads (it infers the number of classes).
"""

from __future__ import annotations

import re
from pathlib import Path

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QVBoxLayout,
    QWidget,
)

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff);;All files (*)"
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
CHECKPOINT_FILTER = (
    "Models (*.pt2 *.pt *.pth *.ckpt *.bin);;torch.export programs (*.pt2);;All files (*)"
)
PROGRAM_SUFFIX = ".pt2"  # a torch.export program carries its architecture: no question
SCREENSHOT_FILTER = "PNG images (*.png)"


def _file(parent: QWidget, caption: str, file_filter: str) -> str | None:
    path, _ = QFileDialog.getOpenFileName(parent, caption, "", file_filter)
    return path or None


def _folder(parent: QWidget, caption: str) -> str | None:
    return QFileDialog.getExistingDirectory(parent, caption) or None


def ask_source(parent: QWidget, kind: str) -> str | None:
    """An image, a video or a folder of images (`kind`) to open as the source."""
    if kind == "folder":
        return _folder(parent, "Open folder of images")
    if kind == "video":
        return _file(parent, "Open video", VIDEO_FILTER)
    return _file(parent, "Open image", IMAGE_FILTER)


def ask_checkpoint(parent: QWidget) -> str | None:
    return _file(parent, "Open checkpoint", CHECKPOINT_FILTER)


def ask_scan_folder(parent: QWidget) -> str | None:
    return _folder(parent, "Folder of images to scan")


def ask_ablation_folder(parent: QWidget) -> str | None:
    return _folder(parent, "Folder of images (class subfolders give accuracy)")


def ask_dissection_folder(parent: QWidget) -> str | None:
    return _folder(parent, "Folder to dissect (Broden, images + masks, or any photos: colours)")


def ask_screenshot_path(parent: QWidget) -> str | None:
    return ask_png_path(parent, "Save screenshot", "deepvis.png")


def ask_png_path(parent: QWidget, caption: str, name: str) -> str | None:
    path, _ = QFileDialog.getSaveFileName(parent, caption, name, SCREENSHOT_FILTER)
    return path or None


def is_program(path: str) -> bool:
    """Whether `path` is a torch.export program (loads as is) rather than a state_dict."""
    return Path(path).suffix.lower() == PROGRAM_SUFFIX


def guess_architecture(path: str, names: list[str]) -> str | None:
    """The architecture a checkpoint's file name starts with ("resnet18-f37072fd.pth")."""
    stem = Path(path).name.lower()
    found = [n for n in names if re.match(re.escape(n.lower()) + r"(?![a-z0-9])", stem)]
    return max(found, key=len) if found else None


class ArchitectureDialog(QDialog):
    """"Which architecture are these weights for?": a filterable list of names.

    `ask` opens it without blocking; accepting emits `chosen` with `ARCH:PATH`.
    """

    chosen = pyqtSignal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Architecture of the checkpoint")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self._path = ""
        self._prompt = QLabel("")
        self._prompt.setWordWrap(True)
        self._filter = QLineEdit()
        self._filter.setPlaceholderText("filter, e.g. resnet")
        self._filter.textChanged.connect(self._on_filter)
        self._list = QListWidget()
        self._list.itemDoubleClicked.connect(self.accept)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        for widget in (self._prompt, self._filter, self._list, buttons):
            layout.addWidget(widget)
        self.resize(420, 460)

    def ask(self, path: str, names: list[str]) -> None:
        """Ask which of `names` the state_dict at `path` belongs to; returns at once."""
        self._path = path
        self._prompt.setText(
            f"{Path(path).name} holds weights only (a state_dict). Which torchvision "
            "architecture are they for? The number of classes is read from the weights."
        )
        self._filter.clear()
        self._list.clear()
        self._list.addItems(names)
        self.choose(guess_architecture(path, names) or (names[0] if names else ""))
        self.open()

    def choices(self) -> list[str]:
        """The names listed (filtered ones included)."""
        items = (self._list.item(i) for i in range(self._list.count()))
        return [item.text() for item in items if item is not None]

    def choose(self, name: str) -> bool:
        """Select `name`; False when it is not listed."""
        items = self._list.findItems(name, Qt.MatchFlag.MatchExactly)
        if not items:
            return False
        self._list.setCurrentItem(items[0])
        return True

    def choice(self) -> str | None:
        item = self._list.currentItem()
        return item.text() if item is not None and not item.isHidden() else None

    def path(self) -> str:
        return self._path

    def accept(self) -> None:
        name = self.choice()
        if name is None:
            return  # nothing chosen: keep asking
        super().accept()
        self.chosen.emit(f"{name}:{self._path}")

    def _on_filter(self, text: str) -> None:
        needle = text.strip().lower()
        first = None
        for i in range(self._list.count()):
            item = self._list.item(i)
            assert item is not None
            item.setHidden(needle not in item.text().lower())
            if first is None and not item.isHidden():
                first = item
        current = self._list.currentItem()
        if first is not None and (current is None or current.isHidden()):
            self._list.setCurrentItem(first)
