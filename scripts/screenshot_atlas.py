"""Drive the real window to an activation atlas with a live frame placed on it; save
docs/atlas_1366.png (the window at 1366×768).

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshot_atlas.py [OUT_DIR]

The folder: scikit-image's photos and the bundled samples, each whole, mirrored and as two
crops (the atlas needs more than a handful of images to fill a grid). The atlas of
_blocks.11 on a 12 × 12 grid is made through the Analysis menu's request, its icons with 64
steps (the menu's 128 take minutes more on a CPU); then the tab shows chelsea.jpg placed on
it and the mouse over the cat's head marks its cell. Cache and folder are temporary, so
nothing of the user's is touched.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import app.session.jobs.atlas as atlas_jobs  # noqa: E402
from app.core.settings import Settings, load_settings  # noqa: E402
from app.gui.main_window import MainWindow  # noqa: E402
from app.gui.theme import apply_dark_theme  # noqa: E402
from app.session.live import LiveSession  # noqa: E402

LAYER, GRID = "_blocks.11", 12
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina", "colorwheel", "camera", "brick", "grass", "gravel",
          "moon", "coins", "clock")


def wait_for(predicate, timeout: float = 1200.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")
        QTest.qWait(100)


def write_folder(folder: Path) -> Path:
    from skimage import data as skdata

    images = [getattr(skdata, n)() for n in PHOTOS]
    images += [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
               for p in sorted((ROOT / "assets" / "samples").glob("*.jpg"))]
    for i, img in enumerate(images):
        img = np.dstack([img] * 3) if img.ndim == 2 else img[..., :3]
        h, w = img.shape[:2]
        for j, v in enumerate((img, img[:, ::-1], img[: h * 2 // 3, : w * 2 // 3],
                               img[h // 3:, w // 3:])):
            cv2.imwrite(str(folder / f"{i:02d}-{j}.png"),
                        cv2.cvtColor(np.ascontiguousarray(v), cv2.COLOR_RGB2BGR))
    return folder


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    base = load_settings(ROOT / "settings.toml")
    cache = tempfile.mkdtemp(prefix="deepvis-atlas-shot-")
    folder = write_folder(Path(tempfile.mkdtemp(prefix="deepvis-atlas-photos-")))
    settings: Settings = dataclasses.replace(
        base, cache=dataclasses.replace(base.cache, dir=cache),
        gui=dataclasses.replace(base.gui, width=1366, height=768))
    atlas_jobs.ICON_STEPS = 64
    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_dark_theme(app)
    session = LiveSession(settings, torch.device("cpu"))
    window = MainWindow(session, settings, initial_layer=LAYER)
    window.resize(1366, 768)
    window.show()
    pane = window.panes.atlas
    try:
        session.load_model("efficientnet_lite0")
        session.open_source(str(ROOT / "assets" / "samples" / "chelsea.jpg"))
        wait_for(lambda: window.last_result is not None and window.last_result.layer == LAYER)
        began = time.monotonic()
        window.features.atlas.make(str(folder), GRID)
        wait_for(lambda: pane.atlas is not None and pane.atlas.icons_done)
        print(f"atlas and icons in {time.monotonic() - began:.0f} s: {len(pane.atlas.cells)} "
              "cells")
        wait_for(lambda: pane.lit_cells(), timeout=60)
        window.panes.input.crop_hovered.emit(0.45, 0.3)  # the cat's head
        QTest.qWait(500)
        window.save_screenshot(out / "atlas_1366.png")
    finally:
        window.close()
    print(f"wrote {out / 'atlas_1366.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
