"""Text that a 1366×768 screen cut off (issue 22, item 13): each part is drawn whole there.

The window is 1350×720 (a 1366×768 screen less the window frame and a panel), on the
numpy backend; each check reads what the pane draws, through the driver.
"""

from __future__ import annotations

import pytest
from fake_backend import DEFAULT_LAYER, FakeBackend, photo
from gui_driver import WindowDriver
from PyQt6.QtCore import Qt

from app.core.messages import FrameImage, LayerInfo, ModelReady
from app.core.settings import GuiSettings, Settings

pytest.importorskip("pytestqt")

SMALL = Settings(gui=GuiSettings(width=1350, height=720))


@pytest.fixture
def ui(qtbot, backend: FakeBackend) -> WindowDriver:
    ui = WindowDriver.open(qtbot, backend, SMALL)
    ui.wait_for_results()
    return ui


def test_the_help_card_fits_with_its_last_row_and_footer(ui: WindowDriver) -> None:
    ui.press(Qt.Key.Key_H)
    ui.wait_until(ui.help_visible)
    assert ui.help_card_inside_window()
    text = ui.help_text()
    assert "h or Esc closes this card" in text
    for _keys, what in ui.help_rows():  # every row is on the card, the last one too
        assert what.split("(")[0].replace("'", "&#x27;").strip() in text, what


def test_the_unit_card_headings_are_drawn_whole(ui: WindowDriver) -> None:
    ui.trigger("attribution:guided")
    ui.press(Qt.Key.Key_C)
    ui.wait_until(lambda: "guided backprop" in ui.card_heading("attribution"))
    assert ui.card_headings_fit() == {"map": True, "attribution": True, "preferred": True}


def test_ablated_top5_names_fit_their_bars(ui: WindowDriver) -> None:
    ui.toggle_ablation()
    ui.wait_until(ui.predictions_two_columns)
    assert ui.prediction_label_room() >= ui.prediction_text_width("window screen")


def test_a_transformer_layer_row_keeps_its_block_number(qtbot) -> None:
    backend = FakeBackend(ready=False)
    ui = WindowDriver.open(qtbot, backend, SMALL)
    names = [f"encoder.layers.encoder_layer_{b}.mlp.{i}" for b in range(12) for i in (0, 3)]
    layers = tuple(LayerInfo(n, (768, 14, 14), "Linear", "tokens") for n in names)
    backend.emit(ModelReady("vit_b_16", layers, names[0], "cpu", 1000))
    ui.wait_until(lambda: len(ui.layer_rows()) == len(names))
    for row, name in enumerate(names):
        block_and_leaf = name.split("encoder.layers.")[1]
        assert block_and_leaf[-12:] in ui.layer_row_shown(row), ui.layer_row_shown(row)


def test_the_preferred_grid_title_fits(ui: WindowDriver) -> None:
    ui.select_layer("_blocks.15._depthwise_conv")
    ui.trigger("preferred_grid")
    ui.wait_until(lambda: "preferred images of" in ui.grid_title())
    assert not ui.grid_title_elided(), ui.grid_title()


def test_this_frame_captions_are_drawn_whole(ui: WindowDriver, backend: FakeBackend) -> None:
    ui.press(Qt.Key.Key_X)
    caption = "activation 1.52 → 22.61, 25.8 dB from the frame"
    backend.emit(FrameImage("accentuate", DEFAULT_LAYER, 0, photo(), caption, True, photo()))
    ui.wait_until(lambda: ui.frame_captions()["accentuated"] == caption)
    assert ui.frame_captions_fit()["accentuated"]


def test_concept_labels_stay_inside_their_tiles(ui: WindowDriver) -> None:
    ui.trigger("concept_labels")
    ui.wait_until(lambda: ui.grid_drawn_labels() != {})
    drawn = ui.grid_drawn_labels()
    for unit, (text, tile_px) in drawn.items():
        assert ui.text_width(text) <= tile_px, (unit, text, tile_px)
    assert any(not text.endswith("…") for text, _ in drawn.values())  # short ones whole
