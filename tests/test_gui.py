"""The window against a numpy backend: what it shows, what it sends, how keys and clicks act."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fake_backend import DEFAULT_LAYER, LAYERS, FakeBackend, activations, make_result, photo
from gui_driver import WindowDriver
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QImage
from PyQt6.QtWidgets import QFileDialog

from app.core.messages import ModelReady, Normalization, Notice, NoticeLevel
from app.core.settings import GuiSettings, Settings
from app.core.tiling import normalize_channels
from app.gui.actions import Action, help_rows, keys_text
from app.gui.run import run_window

pytest.importorskip("pytestqt")

DEFAULT_ROW = [i.name for i in LAYERS].index(DEFAULT_LAYER)


def test_shows_mosaic_frame_and_predictions(ui: WindowDriver) -> None:
    r = ui.last_result()
    assert r.layer == DEFAULT_LAYER
    expected = make_result(DEFAULT_LAYER, 0)
    assert np.shares_memory(ui.grid_image(), r.mosaic)  # no copy on the GUI thread
    np.testing.assert_array_equal(ui.grid_image(), expected.mosaic)
    np.testing.assert_array_equal(ui.input_frame(), photo())
    assert ui.prediction_rows()[0] == ("Egyptian cat", "61.2%")
    assert len(ui.prediction_rows()) == 5
    assert ui.grid_title().startswith(f"{DEFAULT_LAYER} · 240 channels of 28×28")
    # the overlay is stretched over the crop box the model saw
    x, y, side, _ = r.crop
    assert ui.overlay_rect() == pytest.approx((x, y, side, side))


def test_model_ready_fills_layer_list_and_sends_default_view(ui: WindowDriver,
                                                             backend: FakeBackend) -> None:
    texts = ui.layer_rows()
    assert texts[0] == "_conv_stem  32×112×112"
    assert texts[DEFAULT_ROW] == "_blocks.5._depthwise_conv  240×28×28"
    assert len(texts) == len(LAYERS)
    assert ui.current_layer_row() == DEFAULT_ROW
    first = backend.views[0]
    assert (first.layer, first.unit, first.frozen) == (DEFAULT_LAYER, 0, False)


def test_initial_layer_and_unit_are_used(qtbot) -> None:
    backend = FakeBackend()
    ui = WindowDriver.open(qtbot, backend, initial_layer="_conv_head", initial_unit=5)
    ui.wait_for_results()
    assert backend.views[0].layer == "_conv_head"
    assert backend.views[0].unit == 5
    assert ui.current_layer_text() == "_conv_head  1280×7×7"


def test_unknown_initial_layer_falls_back_to_default_with_warning(qtbot) -> None:
    backend = FakeBackend()
    ui = WindowDriver.open(qtbot, backend, initial_layer="no.such.layer")
    ui.wait_until(lambda: bool(backend.views))
    assert backend.views[0].layer == DEFAULT_LAYER
    assert any("no.such.layer" in n.text for n in ui.notices())


def test_placeholders_before_model_and_frames(qtbot) -> None:
    backend = FakeBackend(ready=False)
    ui = WindowDriver.open(qtbot, backend)
    ui.wait_refreshes(3)
    assert ui.grid_placeholder() == "Loading model…"  # and no image shown
    assert ui.input_placeholder() == "Waiting for frames…"
    backend.emit(FakeBackend.model_ready())
    ui.wait_until(lambda: ui.grid_placeholder() is None)
    assert len(ui.layer_rows()) == len(LAYERS)


def test_clicking_a_layer_row_sends_that_layer(ui: WindowDriver, backend: FakeBackend) -> None:
    ui.click_layer_row(1)  # _blocks.1._project_conv
    assert backend.views[-1].layer == "_blocks.1._project_conv"
    ui.wait_until(lambda: ui.last_result().layer == "_blocks.1._project_conv")
    image = ui.grid_image()
    assert image is not None
    g = ui.last_result().geometry
    assert image.shape == (g.height, g.width)


def test_layer_change_keeps_unit_in_range_else_zero(ui: WindowDriver,
                                                    backend: FakeBackend) -> None:
    ui.select_unit(100)
    assert ui.select_layer("_blocks.15._depthwise_conv")  # 1152 channels: keep 100
    assert backend.views[-1].unit == 100
    assert ui.select_layer("_blocks.1._project_conv")  # 24 channels: back to 0
    view = backend.views[-1]
    assert (view.layer, view.unit) == ("_blocks.1._project_conv", 0)


def test_clicking_a_tile_selects_unit_and_unit_pane_follows(ui: WindowDriver,
                                                           backend: FakeBackend) -> None:
    ui.click_unit(37)
    assert backend.views[-1].unit == 37
    assert ui.selected_unit() == 37
    g = ui.last_result().geometry
    y, x = g.tile_origin(37)
    box = ui.grid_outline()
    assert box is not None  # the outline is shown
    assert box[:2] == (x - 0.5, y - 0.5)
    ui.wait_until(lambda: ui.last_result().unit == 37)
    ui.wait_refreshes(1)
    assert ui.unit_title() == f"{DEFAULT_LAYER} · unit 37"
    expected = normalize_channels(activations(DEFAULT_LAYER)[37][None])[0]
    np.testing.assert_array_equal(ui.unit_map(), expected)
    np.testing.assert_array_equal(ui.overlay_image(), expected)
    acts = activations(DEFAULT_LAYER)
    assert ui.unit_values().startswith(
        f"max {acts[37].max():.2f}   mean {acts[37].mean():.2f}"
    )


def test_click_on_padding_or_outside_selects_nothing(ui: WindowDriver,
                                                     backend: FakeBackend) -> None:
    sent = len(backend.views)
    g = ui.last_result().geometry
    ui.click_mosaic(3.0, g.tile_w + 0.5)  # the one-pixel gutter right of unit 0's tile
    assert len(backend.views) == sent
    assert ui.selected_unit() == 0


def test_hover_shows_unit_max_and_mean(ui: WindowDriver) -> None:
    ui.hover_unit(12)
    acts = activations(DEFAULT_LAYER)
    expected = f"unit 12   max {acts[12].max():.2f}   mean {acts[12].mean():.2f}"
    ui.wait_until(lambda: ui.hover_text() == expected)
    assert ui.hovered_unit() == 12
    ui.leave_grid()
    assert ui.hover_text() == ""


def test_arrow_keys_move_by_one_and_by_a_row(ui: WindowDriver, backend: FakeBackend) -> None:
    cols = ui.last_result().geometry.cols
    ui.press(Qt.Key.Key_Right)
    assert backend.views[-1].unit == 1
    ui.press(Qt.Key.Key_Down)
    assert backend.views[-1].unit == 1 + cols
    ui.press(Qt.Key.Key_Left)
    assert backend.views[-1].unit == cols
    ui.press(Qt.Key.Key_Up)
    assert backend.views[-1].unit == 0
    ui.press(Qt.Key.Key_Left)  # clamped at 0: nothing new is sent
    assert ui.selected_unit() == 0
    # the list kept its row: the arrows went to the units, not to the list
    assert ui.current_layer_row() == DEFAULT_ROW


def test_page_keys_and_u_o_change_layer(ui: WindowDriver, backend: FakeBackend) -> None:
    names = [i.name for i in LAYERS]
    ui.press(Qt.Key.Key_PageDown)
    assert backend.views[-1].layer == names[DEFAULT_ROW + 1]
    ui.press(Qt.Key.Key_O)
    assert backend.views[-1].layer == names[DEFAULT_ROW + 2]
    ui.press(Qt.Key.Key_U)
    ui.press(Qt.Key.Key_PageUp)
    assert backend.views[-1].layer == names[DEFAULT_ROW]
    assert ui.current_layer_row() == DEFAULT_ROW


def test_f_freezes_and_unfreezes(ui: WindowDriver, backend: FakeBackend) -> None:
    ui.press(Qt.Key.Key_F)
    assert backend.views[-1].frozen is True
    ui.wait_until(lambda: ui.last_result().frozen)
    ui.wait_until(lambda: ui.frozen_badge() is not None)
    assert ui.frozen_badge() == "FROZEN"
    ui.press(Qt.Key.Key_F)
    assert backend.views[-1].frozen is False
    ui.wait_until(lambda: ui.frozen_badge() is None)


def test_h_toggles_help_and_escape_closes_it(ui: WindowDriver) -> None:
    assert not ui.help_visible()
    ui.press(Qt.Key.Key_H)
    assert ui.help_visible()
    text = ui.help_text()
    for key, what in (("PgDn / O", "Next layer"), ("F", "Freeze frame"), ("N", "Next image")):
        assert key in text and what in text
    ui.press(Qt.Key.Key_H)
    assert not ui.help_visible()
    ui.press(Qt.Key.Key_H)
    ui.press(Qt.Key.Key_Escape)
    assert not ui.help_visible()


def test_help_rows_menus_and_shortcuts_come_from_one_table(ui: WindowDriver) -> None:
    """Every action with keys is a help row, has exactly those shortcuts, and sits in its menu."""
    rows = ui.help_rows()
    table = ui.window.action_table
    actions = [row for row in table if isinstance(row, Action)]
    for action in actions:
        assert ui.action_text(action.name) == action.text
        assert ui.menu_path(action.name) == action.menu
        assert ui.action_shortcuts(action.name) == list(action.keys)
        if action.keys:
            assert (keys_text(action.keys), action.help or action.text.rstrip("…")) in rows
    # the model rows stand in the table's place for them, and add no help rows
    assert rows == help_rows(table)
    assert ui.menu_path("model:resnet18") == "&Model"
    assert rows[-3] == ("click", "Select the unit under the mouse")


def test_n_and_p_step_the_folder(ui: WindowDriver, backend: FakeBackend) -> None:
    ui.press(Qt.Key.Key_N)
    ui.press(Qt.Key.Key_P)
    assert backend.called("step_source") == [1, -1]


def test_notice_shows_in_status_bar_and_log(ui: WindowDriver, backend: FakeBackend) -> None:
    backend.emit(Notice("camera 0 lost, reconnecting", NoticeLevel.ERROR))
    ui.wait_until(lambda: ui.notice_text() == "camera 0 lost, reconnecting")
    assert "#ff6b6b" in ui.notice_style()
    assert "camera 0 lost, reconnecting" in ui.messages_text()


def test_menus_reach_the_backend(ui: WindowDriver, backend: FakeBackend) -> None:
    assert "(offline)" in ui.action_text("model:efficientnet_lite0")
    assert "(needs download)" in ui.action_text("model:resnet18")
    ui.trigger("model:resnet18")
    assert backend.called("load_model") == ["resnet18"]
    ui.wait_until(lambda: ui.window_title() == "DeepVis Live — resnet18")
    ui.trigger(f"normalization:{Normalization.PER_LAYER}")
    assert backend.views[-1].normalization == Normalization.PER_LAYER
    ui.trigger("mirror")
    assert backend.called("set_mirror") == [not Settings().source.mirror]
    ui.trigger("colormap:gray")
    assert ui.checked_in("colormap") == "colormap:gray"
    lut = ui.grid_lut()
    assert lut is not None
    assert tuple(lut[0]) == (0, 0, 0) and tuple(lut[255]) == (255, 255, 255)


def test_model_ready_again_rebuilds_and_keeps_working(ui: WindowDriver,
                                                      backend: FakeBackend) -> None:
    smaller = dataclasses.replace(
        FakeBackend.model_ready("mini"), layers=LAYERS[:2], default_layer=LAYERS[1].name
    )
    backend.emit(smaller)
    ui.wait_until(lambda: len(ui.layer_rows()) == 2)
    assert backend.views[-1].layer == LAYERS[1].name
    assert isinstance(smaller, ModelReady)


def test_drop_a_file_opens_it(ui: WindowDriver, backend: FakeBackend, tmp_path) -> None:
    image = tmp_path / "dog.jpg"
    image.write_bytes(b"not really")
    assert ui.drop_file(image)  # the drag was accepted
    assert backend.called("open_source") == [str(image)]


def test_file_menu_opens_what_the_dialogs_return(ui: WindowDriver, backend: FakeBackend,
                                                 monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("/v/clip.mp4", ""))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "/data/photos")
    ui.trigger("open_video")
    ui.trigger("open_folder")
    ui.trigger("camera:2")
    assert backend.called("open_source") == ["/v/clip.mp4", "/data/photos", "camera:2"]
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("", ""))
    ui.trigger("open_image")  # a cancelled dialog opens nothing
    assert len(backend.called("open_source")) == 3
    target = tmp_path / "menu.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    ui.trigger("save_screenshot")
    assert target.is_file() and ui.notice_text() == f"saved {target}"


def test_closing_stops_backend_once(qtbot) -> None:
    backend = FakeBackend()
    ui = WindowDriver.open(qtbot, backend)
    ui.close()
    ui.close()
    ui.shutdown()
    assert backend.stop_calls == 1
    assert not ui.polling()


def test_save_screenshot_is_atomic_png(ui: WindowDriver, tmp_path) -> None:
    target = ui.save_screenshot(tmp_path / "grab.png")
    image = QImage(str(target))
    assert (image.width(), image.height()) == ui.window_size()
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


def test_a_token_layer_says_so_in_the_layer_list() -> None:
    from app.core.messages import LayerInfo
    from app.gui.layer_list import layer_row_text

    vit = LayerInfo("encoder.layers.encoder_layer_5", (768, 14, 14), "EncoderBlock", "tokens")
    assert layer_row_text(vit) == "encoder.layers.encoder_layer_5  768×14×14  tokens"
    assert vit.describe().endswith("(EncoderBlock, tokens)")
    conv = LayerInfo("_blocks.5", (80, 14, 14), "MBConvBlock")
    assert layer_row_text(conv) == "_blocks.5  80×14×14"


def test_run_window_inside_a_running_application_returns_when_its_window_closes(
        qtbot, tmp_path) -> None:
    """Embedded (the host has a window of its own): closing the window ends run_window, the
    backend is stopped once, and Qt's loops still run afterwards."""
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication, QWidget

    from app.gui.main_window import MainWindow

    host = QWidget()
    qtbot.addWidget(host)
    host.show()
    backend = FakeBackend()

    def close_the_window() -> None:
        windows = [w for w in QApplication.topLevelWidgets()
                   if isinstance(w, MainWindow) and w.isVisible()]
        if windows and windows[0].results_shown > 0:
            windows[0].close()
        else:
            QTimer.singleShot(50, close_the_window)

    QTimer.singleShot(50, close_the_window)
    code = run_window(backend, Settings(gui=GuiSettings(refresh_ms=10)))
    assert code == 0 and backend.stop_calls == 1
    assert host.isVisible()
    ticks: list[int] = []
    QTimer.singleShot(20, lambda: ticks.append(1))
    qtbot.waitUntil(lambda: ticks == [1], timeout=2000)  # a later loop is not poisoned
