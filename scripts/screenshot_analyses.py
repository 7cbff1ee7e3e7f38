"""Drive the real window through the analyses and save screenshots for docs/.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshot_analyses.py [OUT_DIR]

Scans the bundled sample photos, selects a unit, turns on guided backprop, deletes two
units, opens a top patch's source image, computes ablation curves, renders the whole layer
and shows its preferred images in the grid (G); grabs the window three times (unit tabs,
ablation tab, preferred grid) and the patch dialog once.
The cache goes to a temporary folder, so nothing of the user's is touched.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.core.messages import AttributionMode, PreferredImage  # noqa: E402
from app.core.requests import AblationRequest, JobEvent, ScanRequest  # noqa: E402
from app.core.results import AttributionRecord  # noqa: E402
from app.core.settings import Settings, load_settings  # noqa: E402
from app.gui.main_window import MainWindow  # noqa: E402
from app.gui.theme import apply_dark_theme  # noqa: E402
from app.gui.unit_pane import UnitTab  # noqa: E402
from app.session.live import LiveSession  # noqa: E402

LAYER, UNIT = "_blocks.4", 12


def wait_for(predicate, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")
        QTest.qWait(50)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    base = load_settings(ROOT / "settings.toml")
    cache = tempfile.mkdtemp(prefix="deepvis-shots-")
    settings: Settings = dataclasses.replace(
        base, cache=dataclasses.replace(base.cache, dir=cache),
        scan=dataclasses.replace(base.scan, workers=0))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_dark_theme(app)
    session = LiveSession(settings, torch.device("cpu"))
    window = MainWindow(session, settings, initial_layer=LAYER, initial_unit=UNIT)
    window.show()
    try:
        session.load_model("efficientnet_lite0")
        session.open_source(str(ROOT / "assets" / "samples" / "chelsea.jpg"))
        wait_for(lambda: window.last_result is not None and window.last_result.layer == LAYER)
        finished = []
        original = window.handle_event

        def spy(event):  # type: ignore[no-untyped-def]
            if isinstance(event, JobEvent) and event.finished:
                finished.append(event.kind)
            shown = event.preview if isinstance(event, JobEvent) else None
            if isinstance(shown, PreferredImage) and shown.done and shown.unit == UNIT:
                finished.append("preferred")
            original(event)

        window.handle_event = spy  # type: ignore[method-assign]
        session.submit(ScanRequest(str(ROOT / "assets" / "samples"), LAYER))
        wait_for(lambda: "scan" in finished)
        model = window.view_model
        model.select_unit(UNIT)
        model.set_attribution(AttributionMode.GUIDED)
        window.features.ablation.toggle_ablation()  # delete the selected unit...
        model.select_unit(UNIT + 1)
        window.features.ablation.toggle_ablation()  # ...and its neighbour
        model.select_unit(UNIT)
        wait_for(lambda: "preferred" in finished and window.last_result.unit == UNIT
                 and window.last_result.record(AttributionRecord) is not None)
        window.panes.unit.show_tab(UnitTab.PATCHES)
        QTest.qWait(500)
        window.save_screenshot(out / "analyses.png")
        # a dataset patch clicked: its whole source image, box drawn, decoded off-thread
        tile = window.panes.patches.dataset.grid.tiles[0]
        QTest.mouseClick(tile, Qt.MouseButton.LeftButton, pos=tile.rect().center())
        dialog = window.panes.patch_dialog
        wait_for(lambda: dialog.isVisible() and not dialog.loading)
        QTest.qWait(300)
        dialog.grab().save(str(out / "patch_source.png"))
        dialog.hide()
        session.submit(AblationRequest(str(ROOT / "assets" / "samples"), LAYER))
        wait_for(lambda: "ablate" in finished, timeout=600)
        window.panes.unit.show_tab(UnitTab.PREFERRED)
        window.panes.show_ablation()
        QTest.qWait(500)
        window.save_screenshot(out / "ablation.png")
        # every unit of the layer rendered, then G: the grid shows the preferred images
        window.action_set["restore_all"].trigger()
        window.panes.show_activations()
        window.features.units.start_render_layer()
        wait_for(lambda: "render_layer" in finished, timeout=600)
        window.action_set["preferred_grid"].setChecked(True)
        wait_for(lambda: "40 of 40" in window.panes.grid.title_text())
        QTest.qWait(500)
        window.save_screenshot(out / "preferred_grid.png")
    finally:
        window.close()
    names = ("analyses.png", "patch_source.png", "ablation.png", "preferred_grid.png")
    print("wrote " + ", ".join(str(out / n) for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
