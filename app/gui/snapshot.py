"""Saving grabs of the window: written to a temporary file first, so a reader never sees half."""

from __future__ import annotations

import os
from pathlib import Path

from PyQt6.QtWidgets import QWidget


def save_widget_png(widget: QWidget, path: str | os.PathLike[str]) -> Path:
    """Grab `widget` and write it to `path` as PNG atomically; raises OSError on failure."""
    target = Path(path)
    if target.parent and not target.parent.exists():
        raise OSError(f"cannot save screenshot: folder {target.parent} does not exist")
    pixmap = widget.grab()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if not pixmap.save(str(tmp), "PNG"):
            raise OSError(f"cannot save screenshot to {target}")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
