"""The file dialogs the window opens: each returns a path, or None when cancelled.

Qt's static dialogs (native where the platform has them) behind one function per question,
so the window never spells a filter or a caption, and tests replace `QFileDialog`'s
methods to answer them.
"""

from __future__ import annotations

from PyQt6.QtWidgets import QFileDialog, QWidget

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.webp *.tif *.tiff);;All files (*)"
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
CHECKPOINT_FILTER = "Checkpoints (*.pt *.pth *.ckpt *.bin);;All files (*)"
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


def ask_screenshot_path(parent: QWidget) -> str | None:
    path, _ = QFileDialog.getSaveFileName(
        parent, "Save screenshot", "deepvis.png", SCREENSHOT_FILTER
    )
    return path or None
