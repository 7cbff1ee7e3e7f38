"""The window against a numpy backend: what it shows, what it sends, how keys and clicks act."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fake_backend import DEFAULT_LAYER, LAYERS, FakeBackend, activations, make_result, photo
from PyQt6.QtCore import QEvent, QMimeData, QPoint, QPointF, Qt, QUrl
from PyQt6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PyQt6.QtWidgets import QApplication

from app.core.messages import ModelReady, Normalization, Notice, NoticeLevel
from app.core.settings import GuiSettings, Settings
from app.core.tiling import normalize_channels
from app.gui.main_window import MainWindow
from app.gui.run import run_window

pytest.importorskip("pytestqt")

DEFAULT_ROW = [i.name for i in LAYERS].index(DEFAULT_LAYER)


def make_window(qtbot, backend: FakeBackend | None = None, **kwargs) -> MainWindow:
    backend = backend or FakeBackend()
    window = MainWindow(backend, Settings(gui=GuiSettings(width=1400, height=900)), **kwargs)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    return window


@pytest.fixture
def window(qtbot) -> MainWindow:
    w = make_window(qtbot)
    qtbot.waitUntil(lambda: w.results_shown >= 1)
    return w


def backend_of(w: MainWindow) -> FakeBackend:
    assert isinstance(w.backend, FakeBackend)
    return w.backend


def viewport_pos_of_unit(w: MainWindow, unit: int) -> QPoint:
    """Where on the grid's viewport the centre of `unit`'s tile is drawn."""
    return w.grid.pane.graphics.mapFromScene(w.grid.scene_pos_of_unit(unit))


def click_unit(qtbot, w: MainWindow, unit: int) -> None:
    viewport = w.grid.pane.graphics.viewport()
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=viewport_pos_of_unit(w, unit))


def press(qtbot, w: MainWindow, key: Qt.Key) -> None:
    """A key press while the layer list has focus, as after clicking a layer."""
    w.layer_list.setFocus()
    qtbot.keyClick(w.layer_list, key)


def test_shows_mosaic_frame_and_predictions(window: MainWindow) -> None:
    r = window.last_result
    assert r is not None and r.layer == DEFAULT_LAYER
    expected = make_result(DEFAULT_LAYER, 0)
    assert np.shares_memory(window.grid.image.image, r.mosaic)  # no copy on the GUI thread
    np.testing.assert_array_equal(window.grid.image.image, expected.mosaic)
    np.testing.assert_array_equal(window.input_view.frame_item.image, photo())
    assert window.predictions.rows()[0] == ("Egyptian cat", "61.2%")
    assert len(window.predictions.rows()) == 5
    assert window.grid.title.text().startswith(f"{DEFAULT_LAYER} · 240 channels of 28×28")
    # the overlay is stretched over the crop box the model saw
    x, y, side, _ = r.crop
    rect = window.input_view.overlay_item.mapRectToParent(
        window.input_view.overlay_item.boundingRect()
    )
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == pytest.approx((x, y, side, side))


def test_model_ready_fills_layer_list_and_sends_default_view(window: MainWindow) -> None:
    texts = [window.layer_list.item(i).text() for i in range(window.layer_list.count())]
    assert texts[0] == "_conv_stem  32×112×112"
    assert texts[DEFAULT_ROW] == "_blocks.5._depthwise_conv  240×28×28"
    assert len(texts) == len(LAYERS)
    assert window.layer_list.currentRow() == DEFAULT_ROW
    first = backend_of(window).views[0]
    assert (first.layer, first.unit, first.frozen) == (DEFAULT_LAYER, 0, False)


def test_initial_layer_and_unit_are_used(qtbot) -> None:
    w = make_window(qtbot, initial_layer="_conv_head", initial_unit=5)
    qtbot.waitUntil(lambda: w.results_shown >= 1)
    assert backend_of(w).views[0].layer == "_conv_head"
    assert backend_of(w).views[0].unit == 5
    assert w.layer_list.currentItem().text() == "_conv_head  1280×7×7"


def test_unknown_initial_layer_falls_back_to_default_with_warning(qtbot) -> None:
    w = make_window(qtbot, initial_layer="no.such.layer")
    qtbot.waitUntil(lambda: bool(backend_of(w).views))
    assert backend_of(w).views[0].layer == DEFAULT_LAYER
    assert any("no.such.layer" in n.text for _, n in w.notices)


def test_placeholders_before_model_and_frames(qtbot) -> None:
    backend = FakeBackend(ready=False)
    w = make_window(qtbot, backend)
    qtbot.wait(50)
    assert not w.grid.pane.showing_graphics
    assert w.grid.pane.placeholder.text() == "Loading model…"
    assert w.input_view.pane.placeholder.text() == "Waiting for frames…"
    backend.emit(FakeBackend.model_ready())
    qtbot.waitUntil(lambda: w.grid.pane.showing_graphics)
    assert w.layer_list.count() == len(LAYERS)


def test_clicking_a_layer_row_sends_that_layer(window: MainWindow, qtbot) -> None:
    row = 1  # _blocks.1._project_conv
    item = window.layer_list.item(row)
    rect = window.layer_list.visualItemRect(item)
    qtbot.mouseClick(window.layer_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert backend_of(window).views[-1].layer == "_blocks.1._project_conv"
    qtbot.waitUntil(lambda: window.last_result.layer == "_blocks.1._project_conv")
    assert window.grid.image.image.shape == (
        window.last_result.geometry.height, window.last_result.geometry.width
    )


def test_layer_change_keeps_unit_in_range_else_zero(window: MainWindow, qtbot) -> None:
    window.select_unit(100)
    assert window.select_layer("_blocks.15._depthwise_conv")  # 1152 channels: keep 100
    assert backend_of(window).views[-1].unit == 100
    assert window.select_layer("_blocks.1._project_conv")  # 24 channels: back to 0
    view = backend_of(window).views[-1]
    assert (view.layer, view.unit) == ("_blocks.1._project_conv", 0)


def test_clicking_a_tile_selects_unit_and_unit_pane_follows(window: MainWindow, qtbot) -> None:
    click_unit(qtbot, window, 37)
    assert backend_of(window).views[-1].unit == 37
    assert window.unit == 37
    g = window.last_result.geometry
    y, x = g.tile_origin(37)
    box = window.grid.highlight.rect()
    assert window.grid.highlight.isVisible()
    assert (box.x(), box.y()) == (x - 0.5, y - 0.5)
    qtbot.waitUntil(lambda: window.last_result.unit == 37)
    qtbot.wait(40)
    assert window.unit_pane.title.text() == f"{DEFAULT_LAYER} · unit 37"
    expected = normalize_channels(activations(DEFAULT_LAYER)[37][None])[0]
    np.testing.assert_array_equal(window.unit_pane.image.image, expected)
    np.testing.assert_array_equal(window.input_view.overlay_item.image, expected)
    acts = activations(DEFAULT_LAYER)
    assert window.unit_pane.values.text().startswith(
        f"max {acts[37].max():.2f}   mean {acts[37].mean():.2f}"
    )


def test_click_on_padding_or_outside_selects_nothing(window: MainWindow, qtbot) -> None:
    sent = len(backend_of(window).views)
    g = window.last_result.geometry
    # the one-pixel gutter right of unit 0's tile
    gutter = window.grid.image.mapToScene(QPointF(g.tile_w + 0.5, 3.0))
    viewport = window.grid.pane.graphics.viewport()
    qtbot.mouseClick(
        viewport, Qt.MouseButton.LeftButton, pos=window.grid.pane.graphics.mapFromScene(gutter)
    )
    assert len(backend_of(window).views) == sent
    assert window.unit == 0


def test_hover_shows_unit_max_and_mean(window: MainWindow, qtbot) -> None:
    viewport = window.grid.pane.graphics.viewport()
    qtbot.mouseMove(viewport, viewport_pos_of_unit(window, 12))
    acts = activations(DEFAULT_LAYER)
    expected = f"unit 12   max {acts[12].max():.2f}   mean {acts[12].mean():.2f}"
    qtbot.waitUntil(lambda: window.grid.hover_label.text() == expected)
    assert window.grid.hovered_unit == 12
    QApplication.sendEvent(viewport, QEvent(QEvent.Type.Leave))
    assert window.grid.hover_label.text() == ""


def test_arrow_keys_move_by_one_and_by_a_row(window: MainWindow, qtbot) -> None:
    cols = window.last_result.geometry.cols
    press(qtbot, window, Qt.Key.Key_Right)
    assert backend_of(window).views[-1].unit == 1
    press(qtbot, window, Qt.Key.Key_Down)
    assert backend_of(window).views[-1].unit == 1 + cols
    press(qtbot, window, Qt.Key.Key_Left)
    assert backend_of(window).views[-1].unit == cols
    press(qtbot, window, Qt.Key.Key_Up)
    assert backend_of(window).views[-1].unit == 0
    press(qtbot, window, Qt.Key.Key_Left)  # clamped at 0: nothing new is sent
    assert window.unit == 0
    # the list kept its row: the arrows went to the units, not to the list
    assert window.layer_list.currentRow() == DEFAULT_ROW


def test_page_keys_and_u_o_change_layer(window: MainWindow, qtbot) -> None:
    names = [i.name for i in LAYERS]
    press(qtbot, window, Qt.Key.Key_PageDown)
    assert backend_of(window).views[-1].layer == names[DEFAULT_ROW + 1]
    press(qtbot, window, Qt.Key.Key_O)
    assert backend_of(window).views[-1].layer == names[DEFAULT_ROW + 2]
    press(qtbot, window, Qt.Key.Key_U)
    press(qtbot, window, Qt.Key.Key_PageUp)
    assert backend_of(window).views[-1].layer == names[DEFAULT_ROW]
    assert window.layer_list.currentRow() == DEFAULT_ROW


def test_f_freezes_and_unfreezes(window: MainWindow, qtbot) -> None:
    press(qtbot, window, Qt.Key.Key_F)
    assert backend_of(window).views[-1].frozen is True
    qtbot.waitUntil(lambda: window.last_result.frozen)
    qtbot.waitUntil(lambda: window.frozen_label.isVisible())
    assert window.frozen_label.text() == "FROZEN"
    press(qtbot, window, Qt.Key.Key_F)
    assert backend_of(window).views[-1].frozen is False
    qtbot.waitUntil(lambda: not window.frozen_label.isVisible())


def test_h_toggles_help_and_escape_closes_it(window: MainWindow, qtbot) -> None:
    assert not window.help_overlay.isVisible()
    press(qtbot, window, Qt.Key.Key_H)
    assert window.help_overlay.isVisible()
    text = window.help_overlay.rows_text()
    for key, what in (("PgDn / O", "Next layer"), ("F", "Freeze frame"), ("N", "Next image")):
        assert key in text and what in text
    press(qtbot, window, Qt.Key.Key_H)
    assert not window.help_overlay.isVisible()
    press(qtbot, window, Qt.Key.Key_H)
    press(qtbot, window, Qt.Key.Key_Escape)
    assert not window.help_overlay.isVisible()


def test_n_and_p_step_the_folder(window: MainWindow, qtbot) -> None:
    press(qtbot, window, Qt.Key.Key_N)
    press(qtbot, window, Qt.Key.Key_P)
    assert backend_of(window).called("step_source") == [1, -1]


def test_notice_shows_in_status_bar_and_log(window: MainWindow, qtbot) -> None:
    backend_of(window).emit(Notice("camera 0 lost, reconnecting", NoticeLevel.ERROR))
    qtbot.waitUntil(lambda: window.notice_label.text() == "camera 0 lost, reconnecting")
    assert "#ff6b6b" in window.notice_label.styleSheet()
    assert "camera 0 lost, reconnecting" in window.log_view.toPlainText()


def test_menus_reach_the_backend(window: MainWindow, qtbot) -> None:
    assert "(offline)" in window.model_actions["efficientnet_lite0"].text()
    assert "(needs download)" in window.model_actions["resnet18"].text()
    window.model_actions["resnet18"].trigger()
    assert backend_of(window).called("load_model") == ["resnet18"]
    qtbot.waitUntil(lambda: window.model_name == "resnet18")
    window.normalization_actions[Normalization.PER_LAYER].trigger()
    assert backend_of(window).views[-1].normalization == Normalization.PER_LAYER
    window.mirror_action.toggle()
    assert backend_of(window).called("set_mirror") == [not Settings().source.mirror]
    window.colormap_actions["gray"].trigger()
    assert window.colormap == "gray"
    lut = window.grid.image.lut
    assert tuple(lut[0]) == (0, 0, 0) and tuple(lut[255]) == (255, 255, 255)


def test_model_ready_again_rebuilds_and_keeps_working(window: MainWindow, qtbot) -> None:
    smaller = dataclasses.replace(
        FakeBackend.model_ready("mini"), layers=LAYERS[:2], default_layer=LAYERS[1].name
    )
    backend_of(window).emit(smaller)
    qtbot.waitUntil(lambda: window.layer_list.count() == 2)
    assert backend_of(window).views[-1].layer == LAYERS[1].name
    assert isinstance(smaller, ModelReady)


def test_drop_a_file_opens_it(window: MainWindow, tmp_path) -> None:
    image = tmp_path / "dog.jpg"
    image.write_bytes(b"not really")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image))])
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(QPoint(600, 400), *args)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(window, QDropEvent(QPointF(600, 400), *args))
    assert backend_of(window).called("open_source") == [str(image)]


def test_closing_stops_backend_once(qtbot) -> None:
    backend = FakeBackend()
    w = make_window(qtbot, backend)
    w.close()
    w.close()
    w.shutdown()
    assert backend.stop_calls == 1
    assert not w.timer.isActive()


def test_save_screenshot_is_atomic_png(window: MainWindow, tmp_path) -> None:
    target = window.save_screenshot(tmp_path / "grab.png")
    image = QImage(str(target))
    assert (image.width(), image.height()) == (window.width(), window.height())
    assert [p.name for p in tmp_path.iterdir()] == ["grab.png"]


def test_run_window_screenshot(qtbot, tmp_path) -> None:
    backend = FakeBackend()
    out = tmp_path / "shot.png"
    settings = Settings(gui=GuiSettings(width=1100, height=720, refresh_ms=10))
    code = run_window(backend, settings, screenshot=str(out), frames=3, initial_unit=7)
    assert code == 0
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1100, 720)
    assert backend.results_made >= 3
    assert backend.stop_calls == 1
    assert backend.views[0].unit == 7
    assert [p.name for p in tmp_path.iterdir()] == ["shot.png"]
