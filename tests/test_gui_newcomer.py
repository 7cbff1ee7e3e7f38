"""What a newcomer hit in the window (issue 10, "Broken today"), each against the numpy backend."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from fake_backend import DEFAULT_LAYER, FakeBackend, ablation_curves, make_result
from gui_driver import WindowDriver
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QGuiApplication
from PyQt6.QtWidgets import QFileDialog

from app.core.messages import AttributionMode, Notice, NoticeLevel
from app.core.results import AttributionRecord
from app.core.settings import GuiSettings, Settings
from app.core.view import AttributionView, ColourView, ViewState
from app.gui import status_bar, theme
from app.gui.run import run_window
from app.gui.stage_views.attribution import shown_mode
from app.gui.unit_pane import UnitTab
from app.gui.window_layout import MIN_WINDOW, start_size

pytest.importorskip("pytestqt")


def _open(qtbot, backend: FakeBackend, **gui: int) -> WindowDriver:
    settings = Settings(gui=GuiSettings(**gui)) if gui else Settings(
        gui=GuiSettings(width=1400, height=900))
    ui = WindowDriver.open(qtbot, backend, settings)
    ui.wait_for_results()
    return ui


# ---------------------------------------------------------------- item 2: a state_dict


def test_open_checkpoint_asks_the_architecture_of_a_state_dict(qtbot, monkeypatch,
                                                               tmp_path) -> None:
    backend = FakeBackend()
    ui = _open(qtbot, backend)
    weights = tmp_path / "resnet18-finetuned.pth"
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(weights), ""))
    ui.trigger("open_checkpoint")
    assert ui.architecture_dialog_visible()
    assert ui.architecture_choices() == backend.architectures()
    assert ui.architecture_choice() == "resnet18"  # guessed from the file name
    assert backend.called("load_model") == []  # nothing loads before the question is answered
    ui.choose_architecture("resnet34")
    assert not ui.architecture_dialog_visible()
    assert backend.called("load_model") == [f"resnet34:{weights}"]
    ui.wait_until(lambda: ui.window_title() == f"DeepVis Live — resnet34:{weights}")

    # cancelled: nothing loads
    ui.trigger("open_checkpoint")
    ui.cancel_architecture_dialog()
    assert len(backend.called("load_model")) == 1

    # a torch.export program knows its architecture: it loads at once, nothing is asked
    program = tmp_path / "net.pt2"
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(program), ""))
    ui.trigger("open_checkpoint")
    assert not ui.architecture_dialog_visible()
    assert backend.called("load_model")[-1] == str(program)


# ---------------------------------------------------------------- item 3: --screenshot on a still


def test_screenshot_of_a_still_image_ends_when_its_results_stop(qtbot, tmp_path) -> None:
    backend = FakeBackend(live=False)  # one result per request, like an image
    out = tmp_path / "shot.png"
    settings = Settings(gui=GuiSettings(width=1280, height=720, refresh_ms=10))
    t0 = time.monotonic()
    code = run_window(backend, settings, screenshot=str(out), frames=30,
                      screenshot_timeout_s=60)
    assert code == 0 and out.is_file()
    assert time.monotonic() - t0 < 20  # not the 60 s fallback
    assert backend.results_made < 30


# ---------------------------------------------------------------- item 4: folder n/p


def test_folder_steps_rename_the_input_pane_and_the_status_bar(qtbot, tmp_path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_bytes(b"")
    backend = FakeBackend()
    ui = _open(qtbot, backend)
    ui.open_source(str(folder))
    ui.wait_until(lambda: ui.input_title() == "Input · a.png  1/3")
    ui.press(Qt.Key.Key_N)
    ui.wait_until(lambda: ui.last_result().frame.source == "b.png")
    ui.wait_until(lambda: ui.input_title() == "Input · b.png  2/3")
    assert ui.source_text() == "folder: b.png  2/3"
    ui.press(Qt.Key.Key_P)
    ui.press(Qt.Key.Key_P)
    ui.wait_until(lambda: ui.input_title() == "Input · c.png  3/3")
    assert ui.source_text() == "folder: c.png  3/3"


# ---------------------------------------------------------------- item 5: stale text, errors


@pytest.mark.parametrize("still", ["image", "frozen"])
def test_attribution_caption_follows_two_quick_b_presses(qtbot, still: str) -> None:
    backend = FakeBackend(live=still != "image")
    ui = _open(qtbot, backend)
    if still == "frozen":
        ui.press(Qt.Key.Key_F)
        ui.wait_until(lambda: ui.last_result().frozen)
    ui.show_unit_tab(UnitTab.ATTRIBUTION)
    ui.press(Qt.Key.Key_B)
    ui.wait_until(lambda: shown_mode(ui.last_result()) == AttributionMode.GRADIENT)
    ui.press(Qt.Key.Key_B)
    ui.wait_until(lambda: shown_mode(ui.last_result()) == AttributionMode.DECONVNET)
    # nothing more comes from a still frame: the text must already describe this map
    ui.wait_until(lambda: ui.attribution_badge() == "deconvnet 18 ms/frame", timeout=2000)
    assert ui.attribution_caption().startswith("deconvnet 18 ms/frame ·")


def test_errors_are_shown_whole_and_stay_until_clicked(qtbot, monkeypatch) -> None:
    monkeypatch.setattr(status_bar, "NOTICE_SECONDS", {level: 0.05 for level in NoticeLevel})
    backend = FakeBackend()
    ui = _open(qtbot, backend, width=1280, height=720)
    backend.emit(Notice("a hint"))
    ui.wait_until(lambda: ui.notice_text() == "a hint")
    ui.wait_until(lambda: ui.notice_text() == "")  # a hint fades
    error = ("cannot open /home/user/videos/holiday-2024/very-long-name.mp4: not a video "
             "OpenCV can read; convert it with ffmpeg -i input -c:v libx264 output.mp4 "
             "or open a folder of images instead, then try again from File → Open video")
    backend.emit(Notice(error, NoticeLevel.ERROR))
    ui.wait_until(lambda: ui.notice_text() == error)
    shown = ui.notice_shown_text()
    assert shown != error and shown.endswith("…")  # elided, not cut mid-word
    assert error in ui.notice_tooltip()
    ui.wait_refreshes(20)  # many times an info notice's life
    assert ui.notice_text() == error
    ui.click_notice()
    assert ui.notice_text() == ""


def test_messages_keep_the_newest_line_in_view(qtbot) -> None:
    backend = FakeBackend()
    ui = _open(qtbot, backend, width=1280, height=720)
    for i in range(80):
        backend.emit(Notice(f"message number {i}"))
    ui.wait_refreshes(2)
    assert ui.messages_text().endswith("message number 79")
    assert ui.messages_show_newest()
    for _ in range(3):
        ui.scroll_messages_up()
    assert not ui.messages_show_newest()
    backend.emit(Notice("cannot open camera 1", NoticeLevel.ERROR))  # news: brought into view
    ui.wait_refreshes(2)
    assert ui.messages_show_newest()


def test_a_failed_load_gives_back_the_running_models_label(qtbot) -> None:
    backend = FakeBackend(live=False)
    ui = _open(qtbot, backend)
    ui.wait_until(lambda: ui.model_text() == "efficientnet_lite0 · cpu")
    ui.window.load_model("broken")
    ui.wait_until(lambda: any(n.level == NoticeLevel.ERROR for n in ui.notices()))
    ui.wait_refreshes(2)
    assert ui.model_text() == "efficientnet_lite0 · cpu"


def test_frozen_shows_frozen_instead_of_a_rate(qtbot) -> None:
    backend = FakeBackend()
    ui = _open(qtbot, backend)
    ui.wait_until(lambda: ui.stats_text().strip().startswith("29.6 fps"))
    ui.press(Qt.Key.Key_F)
    ui.wait_until(lambda: ui.last_result().frozen)
    ui.wait_until(lambda: ui.stats_text().startswith("frozen"), timeout=2000)


# ---------------------------------------------------------------- item 6: 1280×720


def test_start_size_fits_the_screen_down_to_1280x720() -> None:
    assert start_size((1560, 940), (2560, 1400)) == (1560, 940)
    assert start_size((1560, 940), (1366, 728)) == (1350, 720)
    assert start_size((1560, 940), (1024, 600)) == MIN_WINDOW
    assert start_size((1100, 700), (1024, 600)) == (1100, 700)  # asked smaller: as asked
    assert start_size((1560, 940), None) == (1560, 940)


def test_the_window_starts_within_the_screen(qtbot) -> None:
    ui = _open(qtbot, FakeBackend(), width=4000, height=3000)
    screen = QGuiApplication.primaryScreen()
    assert screen is not None
    free = screen.availableGeometry()
    w, h = ui.window_size()
    assert w <= max(free.width(), MIN_WINDOW[0]) and h <= max(free.height(), MIN_WINDOW[1])


MIN_PANE = {  # (w, h) each pane keeps at 1280×720
    "input": (280, 110), "predictions": (280, 120), "messages": (280, 80),
    "grid": (360, 300), "layers": (300, 100), "unit": (300, 320), "status": (1200, 16),
}


def test_at_1280x720_every_pane_is_visible_and_usable(qtbot) -> None:
    ui = _open(qtbot, FakeBackend(), width=1280, height=720)
    assert ui.window_size() == (1280, 720)
    rects = ui.pane_rects()
    w, h = ui.window_size()
    for name, (min_w, min_h) in MIN_PANE.items():
        x, y, pw, ph = rects[name]
        assert pw >= min_w and ph >= min_h, (name, rects[name])
        assert x >= 0 and y >= 0 and x + pw <= w and y + ph <= h, (name, rects[name])
    assert ui.unit_tabs_fit()  # no tab title hidden behind scroll arrows


# ---------------------------------------------------------------- item 11: honest labels


def test_a_blank_attribution_at_a_saturated_relu6_says_why(qtbot) -> None:
    backend = FakeBackend(live=False)
    ui = _open(qtbot, backend)
    ui.show_unit_tab(UnitTab.ATTRIBUTION)
    ui.press(Qt.Key.Key_B)
    ui.wait_until(lambda: ui.last_result().record(AttributionRecord) is not None)
    assert ui.attribution_placeholder() == ""  # a real map is shown as a map
    r = make_result(DEFAULT_LAYER, 0, view=ViewState(
        layer=DEFAULT_LAYER, parts=(AttributionView(AttributionMode.GRADIENT),)))
    rec = r.record(AttributionRecord)
    assert rec is not None
    unit_map = np.array(r.unit_map)
    unit_map[3, 4] = 6.0  # the maximum, exactly ReLU6's ceiling
    blank = dataclasses.replace(rec, saliency=np.zeros_like(rec.saliency))
    saturated = dataclasses.replace(r.with_record(blank), unit_map=np.minimum(unit_map, 6.0))
    ui.show_result(saturated)
    text = ui.attribution_placeholder()
    assert "saturated" in text and "ReLU6" in text and "another" in text
    # all zero for another reason: still said, without blaming ReLU6
    other = dataclasses.replace(saturated, unit_map=np.minimum(unit_map, 5.0))
    ui.show_result(other)
    assert "ReLU6" not in ui.attribution_placeholder()
    assert "no gradient" in ui.attribution_placeholder()
    ui.show_result(r)
    assert ui.attribution_placeholder() == ""


def test_ablation_tab_says_when_class_means_were_shifted(qtbot) -> None:
    backend = FakeBackend()
    ui = _open(qtbot, backend)
    curves = ablation_curves(DEFAULT_LAYER)
    backend.emit(curves)
    ui.wait_until(ui.ablation_showing_curves)
    assert ui.ablation_note() == ""  # non-negative layer: Morcos et al.'s index as defined
    backend.emit(dataclasses.replace(curves, shifted_units=37))
    ui.wait_until(lambda: "37 of 240 units" in ui.ablation_note())
    assert "shifted" in ui.ablation_note()
    # information, not an error: not in the warning yellow, and it says so
    assert ui.ablation_note_colour().lower() != theme.WARNING.lower()
    assert ui.ablation_note().startswith("ⓘ About")


def test_every_pane_saves_as_png_from_the_file_menu_and_its_right_click(
        qtbot, tmp_path, monkeypatch) -> None:
    from PyQt6.QtGui import QImage

    from app.gui.actions import EXPORTABLE_PANES

    ui = WindowDriver.open(qtbot, FakeBackend())
    ui.wait_for_results()
    menu_target = tmp_path / "from_menu" / "grid.png"
    menu_target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(menu_target), ""))
    ui.trigger("export:grid")
    assert QImage(str(menu_target)).width() == ui.pane_size("grid")[0]
    assert ui.notice_text() == f"saved {menu_target}"
    menu_target.unlink()
    menu_target.parent.rmdir()

    for name, label in EXPORTABLE_PANES:
        assert ui.menu_path(f"export:{name}") == "&File/Export pane as PNG", name
        assert f"{label}…" in ui.pane_menu(name), name  # the same action on right-click
        saved = ui.export_pane(name, tmp_path / f"{name}.png")
        image = QImage(str(saved))
        assert (image.width(), image.height()) == ui.pane_size(name), name
        corner, middle = image.pixel(1, 1), image.pixel(image.width() // 2,
                                                        image.height() // 2)
        assert not image.isNull() and (corner != middle or name == "layers"), name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}.png" for n, _ in EXPORTABLE_PANES)  # written atomically: no temp files left


# ---------------------------------------------------------------- issue 22.16: This frame, freezing


def test_this_frame_shows_the_frame_as_the_model_saw_it_before_any_job(qtbot) -> None:
    backend = FakeBackend()
    ui = _open(qtbot, backend)
    ui.show_frame_tab()
    ui.wait_until(lambda: ui.frame_seed_picture() is not None)
    r = ui.last_result()
    x, y, w, h = r.crop
    np.testing.assert_array_equal(ui.frame_seed_picture(), r.frame.image[y : y + h, x : x + w])


@pytest.mark.parametrize("key", [Qt.Key.Key_X, Qt.Key.Key_V, Qt.Key.Key_M])
def test_a_this_frame_job_says_it_froze_the_frame_and_how_to_go_live(qtbot, key) -> None:
    backend = FakeBackend()
    ui = _open(qtbot, backend)
    ui.press(key)
    assert backend.views[-1].frozen
    assert "frame frozen" in ui.notice_text() and "press f" in ui.notice_text()
    ui.press(Qt.Key.Key_F)  # live again, as the notice says
    assert not backend.views[-1].frozen


def test_n_while_frozen_says_so_instead_of_stepping_unseen(qtbot, tmp_path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(b"")
    backend = FakeBackend()
    ui = _open(qtbot, backend)
    ui.open_source(str(folder))
    ui.wait_until(lambda: ui.input_title() == "Input · a.png  1/2")
    ui.press(Qt.Key.Key_F)
    ui.press(Qt.Key.Key_N)
    assert backend.called("step_source") == []
    assert "frozen" in ui.notice_text() and "press f" in ui.notice_text()
    ui.press(Qt.Key.Key_F)
    ui.press(Qt.Key.Key_N)
    assert backend.called("step_source") == [1]


# ---------------------------------------------------------------- issue 22.17: colour or shape?


def test_k_feeds_the_network_the_frame_in_grayscale_and_back(qtbot) -> None:
    backend = FakeBackend()
    ui = _open(qtbot, backend)
    assert not ui.grayscale_input()
    assert ui.menu_path("grayscale") == "&View"
    assert ("K", "Feed the network the frame in grayscale: which units lose their response "
            "without colour") in ui.help_rows()
    ui.press(Qt.Key.Key_K)
    assert ui.grayscale_input() and ui.action_checked("grayscale")
    assert backend.views[-1].part(ColourView).grayscale  # the worker is asked for it
    assert "grayscale input" in ui.notice_text()
    ui.press(Qt.Key.Key_K)
    assert not ui.grayscale_input() and not ui.action_checked("grayscale")
    assert not backend.views[-1].part(ColourView).grayscale
    assert ui.notice_text() == "colour input again"
