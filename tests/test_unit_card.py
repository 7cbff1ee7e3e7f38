"""The unit card (everything about a unit at once) and the unit report, against the numpy
backend: what the window asks for, what the card shows, and what the report holds."""

from __future__ import annotations

import base64
import re

import cv2
import numpy as np
import pytest
from fake_backend import (
    DEFAULT_LAYER,
    FakeBackend,
    attribution_map,
    dataset_patches,
    preferred_image,
    write_photos,
)
from gui_driver import WindowDriver
from PyQt6.QtCore import Qt

from app.core.messages import AttributionMode
from app.core.requests import PreferredImageRequest, UnitCardRequest
from app.core.view import AttributionView, BlocksView

pytest.importorskip("pytestqt")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list:
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture
def backend(photos) -> FakeBackend:
    return FakeBackend(photos=photos, render_steps=(64,))


def _card_filled(ui: WindowDriver) -> bool:
    card = ui.card()
    return (len(card.shown_patch_attributions()) == 9 and card.shown_map() is not None
            and card.shown_attribution() is not None
            and all(p is not None for p in card.shown_preferred()))


def test_c_shows_the_whole_unit_at_once(ui: WindowDriver, backend: FakeBackend, photos):
    assert not ui.showing_card()
    ui.press(Qt.Key.Key_C)
    assert ui.showing_card()
    assert UnitCardRequest(DEFAULT_LAYER, 0) in backend.asked(UnitCardRequest)
    ui.wait_until(lambda: _card_filled(ui))
    card = ui.card()
    # the card turned attribution on (guided backprop), so the live half is not empty
    assert backend.views[-1].part(AttributionView).mode == AttributionMode.GUIDED
    np.testing.assert_array_equal(card.shown_attribution(),
                                  attribution_map(DEFAULT_LAYER, 0, AttributionMode.GUIDED,
                                                  None))
    np.testing.assert_array_equal(card.shown_map(), ui.unit_map())
    crops = [p.image for p in dataset_patches(photos, DEFAULT_LAYER, 0)]
    assert len(crops) == 9
    for shown, crop in zip(card.shown_patches(), crops, strict=True):
        np.testing.assert_array_equal(shown, crop)
    for shown, crop in zip(card.shown_patch_attributions(), crops, strict=True):
        np.testing.assert_array_equal(shown, 255 - crop)  # the fake's attribution of a crop
    preferred = card.shown_preferred()
    # the card's four are its own diversity set, not the selection's preferred image
    for index in (0, 1, 2, 3):
        np.testing.assert_array_equal(
            preferred[index], np.roll(preferred_image(DEFAULT_LAYER, 0, 64, 64), 9 * index, 1))
    assert card.preferred_captions() == ["#1 · 10.00", "#2 · 11.00", "#3 · 12.00", "#4 · 13.00"]
    assert "Class selectivity 0.04 (rank 1), prefers tabby cat" in card.facts_text()
    assert "Concept: red (color), IoU 0.200" in card.facts_text()  # the fake dissection


def test_the_card_follows_the_selection_and_goes_back_to_the_grid(ui: WindowDriver,
                                                                   backend: FakeBackend,
                                                                   photos):
    ui.press(Qt.Key.Key_C)
    ui.wait_until(lambda: _card_filled(ui))
    ui.press(Qt.Key.Key_Right)
    assert UnitCardRequest(DEFAULT_LAYER, 1) in backend.asked(UnitCardRequest)
    card = ui.card()
    assert card.title.text() == f"{DEFAULT_LAYER} · unit 1"
    ui.wait_until(lambda: _card_filled(ui))
    np.testing.assert_array_equal(card.shown_patches()[0],
                                  dataset_patches(photos, DEFAULT_LAYER, 1)[0].image)
    ui.press(Qt.Key.Key_C)
    assert not ui.showing_card()
    # the card's, so it goes
    assert backend.views[-1].part(AttributionView).mode == AttributionMode.OFF
    assert "unit_card" in backend.called("cancel")


def test_an_attribution_the_user_chose_stays_when_the_card_closes(ui: WindowDriver,
                                                                  backend: FakeBackend):
    ui.press(Qt.Key.Key_B)  # gradient
    ui.press(Qt.Key.Key_C)
    assert backend.views[-1].part(AttributionView).mode == AttributionMode.GRADIENT  # not replaced
    ui.press(Qt.Key.Key_C)
    assert backend.views[-1].part(AttributionView).mode == AttributionMode.GRADIENT


def test_the_unit_report_is_the_card_as_png_and_as_one_page(ui: WindowDriver, photos,
                                                            tmp_path):
    ui.press(Qt.Key.Key_C)
    ui.wait_until(lambda: _card_filled(ui))
    png, page = ui.save_unit_report(tmp_path / "report.png")
    assert png == tmp_path / "report.png" and page == tmp_path / "report.html"
    shot = cv2.imread(str(png))
    card = ui.card()
    ratio = ui.window.devicePixelRatio()
    assert shot.shape[:2] == (round(card.height() * ratio), round(card.width() * ratio))
    html = page.read_text(encoding="utf-8")
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    # the frame, live map and attribution, 4 preferred images, 9 patches, 9 attributions:
    # all inside
    assert len(images) == 3 + 4 + 9 + 9
    assert "src=\"http" not in html and "src=\"file" not in html

    def decoded(i: int) -> np.ndarray:
        raw = np.frombuffer(base64.b64decode(images[i]), np.uint8)
        return cv2.cvtColor(cv2.imdecode(raw, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    crops = [p.image for p in dataset_patches(photos, DEFAULT_LAYER, 0)]
    # the frame the live map came from, as the model saw it, named
    r = ui.last_result()
    x, y, w, h = r.crop
    np.testing.assert_array_equal(decoded(0), r.frame.image[y : y + h, x : x + w])
    assert f"the frame: {r.frame.source} · frame {r.frame.index}" in html
    np.testing.assert_array_equal(decoded(7), crops[0])
    np.testing.assert_array_equal(decoded(16), 255 - crops[0])
    np.testing.assert_array_equal(decoded(4), np.roll(preferred_image(DEFAULT_LAYER, 0, 64, 64),
                                                      9, 1))
    for text in (f"{DEFAULT_LAYER} · unit 0", "Class selectivity 0.04", "Top dataset patches",
                 "Attributions of the top patches", "#4 · 13.00", "diversity term"):
        assert text in html, text
    assert not list(tmp_path.glob(".*tmp"))  # written via temporary files, renamed


@pytest.mark.parametrize("size", [(1350, 728), (1264, 680)])
def test_the_card_fits_a_small_screen(ui: WindowDriver, size):
    """1366×768 less the window frame, and the 1280×720 minimum: every part of the card
    is on screen and large enough to read."""
    ui.window.resize(*size)
    ui.press(Qt.Key.Key_C)
    ui.wait_until(lambda: _card_filled(ui))
    card = ui.card()
    ui.wait_until(lambda: card.width() > 0)
    assert card.width() >= 540 and card.height() >= 480, (card.width(), card.height())
    for tile in [*card.patch_tiles, *card.patch_attribution_tiles, *card.preferred_tiles]:
        assert tile.width() >= 60 and tile.height() >= 60, (tile.width(), tile.height())
        corner = tile.mapTo(card, tile.rect().bottomRight())
        assert corner.x() <= card.width() and corner.y() <= card.height()
    for view in (card.map_view, card.attribution_view):
        assert min(view.width(), view.height()) >= 140, (view.width(), view.height())
    # nothing on the card (the concept mask's caption, say) asks for a wider window
    hint = ui.window.minimumSizeHint()
    assert hint.width() <= 1280 and hint.height() <= 720, (hint.width(), hint.height())


def test_clicking_a_prediction_selects_its_class_unit_and_ctrl_click_the_versus(
        ui: WindowDriver, backend: FakeBackend):
    from fake_backend import PREDICTIONS

    ui.wait_until(lambda: ui.prediction_rows() != [])
    ui.click_prediction(1)
    tabby = PREDICTIONS[1].index
    view = backend.views[-1]
    assert (view.layer, view.unit, view.part(BlocksView).target) == ("logits", tabby, tabby)
    assert PreferredImageRequest("logits", tabby) in backend.asked(PreferredImageRequest)
    ui.wait_until(lambda: "tabby" in ui.unit_title())
    assert ui.unit_title() == f"logits · unit {tabby} · tabby, tabby cat"
    ui.click_prediction(0, versus=True)
    view = backend.views[-1]
    asked = view.part(BlocksView)
    assert (asked.target, asked.versus) == (tabby, PREDICTIONS[0].index)
    assert set(ui.marked_predictions()) == {tabby, PREDICTIONS[0].index}
    assert (view.layer, view.unit) == ("logits", tabby)  # the versus class selects nothing
