"""The Top patches tab and the unit card say which scanned folder the patches come from."""

from __future__ import annotations

import pytest
from fake_backend import FakeBackend, write_photos
from gui_driver import WindowDriver

from app.gui.unit_pane import UnitTab

pytest.importorskip("pytestqt")


def test_top_patches_name_the_folder_they_come_from(qtbot, tmp_path) -> None:
    photos = write_photos(tmp_path / "holiday snaps", ("chelsea", "coffee", "astronaut"))
    ui = WindowDriver.open(qtbot, FakeBackend(photos=photos))
    ui.wait_for_results()
    ui.show_unit_tab(UnitTab.PATCHES)
    ui.select_unit(5)
    ui.wait_until(ui.showing_patches)
    assert "top 3 from holiday snaps" in ui.patches_info()
    ui.wait_until(lambda: "from holiday snaps" in ui.card_heading("patches"))
    assert ui.card_heading("patches").startswith("Top 3 dataset patches from holiday snaps")
