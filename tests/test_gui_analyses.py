"""The analysis panes against the numpy backend: attribution, ablation, patches, preferred
images, jobs and ablation curves — what the window sends and what it shows."""

from __future__ import annotations

import numpy as np
import pytest
from fake_backend import (
    ABLATED_PREDICTIONS,
    DEFAULT_LAYER,
    PREDICTIONS,
    FakeBackend,
    ablation_curves,
    attribution_map,
    dataset_patches,
    live_top,
    photo,
    skimage_photo,
    write_photos,
)
from PyQt6.QtCore import QPointF, Qt
from PyQt6.QtWidgets import QFileDialog

from app.core.messages import (
    AblationMode,
    AttributionMode,
    JobFinished,
    JobKind,
    JobProgress,
    Patch,
    UnitPatches,
)
from app.core.settings import GuiSettings, Settings
from app.gui.main_window import ATTRIBUTION_TAB, PATCHES_TAB, PREFERRED_TAB, MainWindow
from app.gui.qimages import qimage_to_rgb

pytest.importorskip("pytestqt")


def make_window(qtbot, backend: FakeBackend) -> MainWindow:
    window = MainWindow(backend, Settings(gui=GuiSettings(width=1400, height=900)))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(lambda: window.results_shown >= 1)
    return window


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def window(qtbot, backend: FakeBackend) -> MainWindow:
    return make_window(qtbot, backend)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list:
    return write_photos(tmp_path_factory.mktemp("photos"))


def press(qtbot, w: MainWindow, key: Qt.Key) -> None:
    w.layer_list.setFocus()
    qtbot.keyClick(w.layer_list, key)


def click_map_cell(qtbot, w: MainWindow, y: int, x: int) -> None:
    graphics = w.unit_pane.pane.graphics
    pos = graphics.mapFromScene(w.unit_pane.scene_pos_of_cell(y, x))
    qtbot.mouseClick(graphics.viewport(), Qt.MouseButton.LeftButton, pos=pos)


# ---------------------------------------------------------------- attribution


def test_b_cycles_attribution_modes_in_sent_views(window: MainWindow, backend, qtbot) -> None:
    sent = []
    for _ in range(4):
        press(qtbot, window, Qt.Key.Key_B)
        sent.append(backend.views[-1].attribution)
    assert sent == [
        AttributionMode.GRADIENT, AttributionMode.DECONVNET, AttributionMode.GUIDED,
        AttributionMode.OFF,
    ]
    assert window.attribution_actions[AttributionMode.OFF].isChecked()


def test_attribution_shows_on_input_pane_and_status(window: MainWindow, backend, qtbot) -> None:
    press(qtbot, window, Qt.Key.Key_B)
    expected = attribution_map(DEFAULT_LAYER, 0, AttributionMode.GRADIENT, None)
    item = window.input_view.attribution_item
    qtbot.waitUntil(lambda: item.image is not None and item.isVisible())
    np.testing.assert_array_equal(item.image, expected)
    assert not window.input_view.overlay_item.isVisible()  # replaces the unit's map
    # stretched over the crop box the model saw, like the unit overlay
    x, y, side, _ = window.last_result.crop
    rect = item.mapRectToParent(item.boundingRect())
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == pytest.approx((x, y, side, side))
    qtbot.waitUntil(lambda: window.attribution_label.text() == "gradient 18 ms/frame")
    assert window.attribution_label.isVisible()
    # the Attribution tab shows the same map
    window.unit_pane.tabs.setCurrentIndex(ATTRIBUTION_TAB)
    qtbot.waitUntil(lambda: window.attribution_view.image.image is not None)
    np.testing.assert_array_equal(window.attribution_view.image.image, expected)
    # off again: the unit's map is back and the status label goes
    for _ in range(3):
        press(qtbot, window, Qt.Key.Key_B)
    assert backend.views[-1].attribution == AttributionMode.OFF
    assert not item.isVisible()
    assert window.input_view.overlay_item.isVisible()
    assert not window.attribution_label.isVisible()


def test_clicking_the_unit_map_sets_attribution_at(window: MainWindow, backend, qtbot) -> None:
    click_map_cell(qtbot, window, 5, 9)
    view = backend.views[-1]
    assert view.attribution_at == (5, 9)
    assert view.attribution == AttributionMode.GRADIENT  # a click asks for attribution
    marker = window.unit_pane.position_marker
    assert marker.isVisible() and (marker.rect().x(), marker.rect().y()) == (9, 5)
    expected = attribution_map(DEFAULT_LAYER, 0, AttributionMode.GRADIENT, (5, 9))
    qtbot.waitUntil(
        lambda: window.input_view.attribution_item.image is not None
        and np.array_equal(window.input_view.attribution_item.image, expected)
    )
    click_map_cell(qtbot, window, 3, 4)
    assert backend.views[-1].attribution_at == (3, 4)
    click_map_cell(qtbot, window, 3, 4)  # the same cell again: back to the unit's maximum
    assert backend.views[-1].attribution_at is None
    assert not marker.isVisible()
    click_map_cell(qtbot, window, 2, 2)
    press(qtbot, window, Qt.Key.Key_Escape)  # Esc clears it too (no help card open)
    assert backend.views[-1].attribution_at is None
    click_map_cell(qtbot, window, 2, 2)
    window.select_unit(8)  # a new unit: the old position means nothing
    assert (backend.views[-1].unit, backend.views[-1].attribution_at) == (8, None)


# ---------------------------------------------------------------- live ablation


def test_d_deletes_and_restores_the_selected_unit(window: MainWindow, backend, qtbot) -> None:
    window.select_unit(37)
    press(qtbot, window, Qt.Key.Key_D)
    assert backend.views[-1].ablated == ((DEFAULT_LAYER, (37,)),)
    assert window.unit_pane.deleted_rows() == [f"{DEFAULT_LAYER}:37"]
    assert window.unit_pane.delete_button.text().startswith("Restore unit")
    assert window.grid.marked_units == (37,)
    press(qtbot, window, Qt.Key.Key_D)
    assert backend.views[-1].ablated == ()
    assert window.unit_pane.deleted_rows() == []
    assert window.grid.marked_units == ()
    # the button does the same as the key
    qtbot.mouseClick(window.unit_pane.delete_button, Qt.MouseButton.LeftButton)
    assert backend.views[-1].ablated == ((DEFAULT_LAYER, (37,)),)


def test_restore_and_restore_all(window: MainWindow, backend, qtbot) -> None:
    for unit in (3, 12, 40):
        window.select_unit(unit)
        window.toggle_ablation()
    assert window.select_layer("_conv_head")
    window.select_unit(7)
    window.toggle_ablation()
    assert backend.views[-1].ablated == (
        ("_blocks.5._depthwise_conv", (3, 12, 40)), ("_conv_head", (7,)),
    )
    rows = window.unit_pane.deleted_rows()
    assert rows == [
        f"{DEFAULT_LAYER}:3", f"{DEFAULT_LAYER}:12", f"{DEFAULT_LAYER}:40", "_conv_head:7",
    ]
    window.unit_pane.deleted_list.item(1).setSelected(True)
    qtbot.mouseClick(window.unit_pane.restore_button, Qt.MouseButton.LeftButton)
    assert backend.views[-1].ablated == (
        ("_blocks.5._depthwise_conv", (3, 40)), ("_conv_head", (7,)),
    )
    qtbot.waitUntil(lambda: window.last_result.layer == "_conv_head")
    qtbot.waitUntil(lambda: window.grid.marked_units == (7,))
    qtbot.mouseClick(window.unit_pane.restore_all_button, Qt.MouseButton.LeftButton)
    assert backend.views[-1].ablated == ()
    assert not window.unit_pane.deleted_box.isVisible()


def test_ablation_mode_choice_is_sent(window: MainWindow, backend) -> None:
    window.unit_pane.mode_combo.setCurrentIndex(1)
    assert backend.views[-1].ablation_mode == AblationMode.MEAN
    assert window.ablation_mode_actions[AblationMode.MEAN].isChecked()
    window.ablation_mode_actions[AblationMode.ZERO].trigger()
    assert backend.views[-1].ablation_mode == AblationMode.ZERO
    assert window.unit_pane.mode_combo.currentData() == AblationMode.ZERO


def test_predictions_show_intact_and_ablated_columns(window: MainWindow, qtbot) -> None:
    assert list(window.predictions.columns()) == [""]
    window.toggle_ablation()
    qtbot.waitUntil(lambda: window.predictions.two_columns)
    columns = window.predictions.columns()
    assert list(columns) == ["intact", "ablated"]
    assert columns["intact"][0] == ("Egyptian cat", "61.2%")
    assert columns["ablated"][0] == ("tabby, tabby cat", "33.1%")
    assert [label for label, _ in columns["ablated"]] == [p.label for p in ABLATED_PREDICTIONS]
    assert [label for label, _ in columns["intact"]] == [p.label for p in PREDICTIONS]
    window.toggle_ablation()
    qtbot.waitUntil(lambda: not window.predictions.two_columns)


# ---------------------------------------------------------------- top patches


def test_selecting_a_unit_requests_it_once(window: MainWindow, backend, qtbot) -> None:
    assert backend.called("request_unit") == [(DEFAULT_LAYER, 0)]
    window.select_unit(21)
    window.set_frozen(True)  # a view change that is not a selection: no new request
    assert backend.called("request_unit") == [(DEFAULT_LAYER, 0), (DEFAULT_LAYER, 21)]
    assert window.select_layer("_conv_head")
    assert backend.called("request_unit")[-1] == ("_conv_head", 21)


def test_unit_patches_fill_the_grid_with_values(qtbot, photos) -> None:
    w = make_window(qtbot, FakeBackend(photos=photos))
    w.unit_pane.tabs.setCurrentIndex(PATCHES_TAB)
    w.select_unit(5)
    expected = dataset_patches(photos, DEFAULT_LAYER, 5)
    qtbot.waitUntil(lambda: w.patches_view.dataset.showing_patches)
    assert len(w.patches_view.dataset.grid.captions()) == 9
    assert w.patches_view.dataset.grid.captions() == [f"{p.value:.2f}" for p in expected]
    assert w.patches_view.dataset.grid.tiles[0].patch.source == expected[0].source
    assert f"best {expected[0].value:.2f}" in w.patches_view.info.text()


def test_empty_patches_show_the_note_and_a_scan_button(window, backend, qtbot, monkeypatch):
    window.unit_pane.tabs.setCurrentIndex(PATCHES_TAB)
    page = window.patches_view.dataset
    qtbot.waitUntil(lambda: "No scan of" in page.note.text())
    assert DEFAULT_LAYER in page.note.text() and "deepvis scan" in page.note.text()
    assert not page.showing_patches
    assert page.button is not None and page.button.isVisible()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "/data/imgs")
    qtbot.mouseClick(page.button, Qt.MouseButton.LeftButton)
    assert backend.called("start_scan") == [("/data/imgs", DEFAULT_LAYER)]


def test_stale_unit_patches_are_ignored(window: MainWindow, backend, qtbot) -> None:
    patch = Patch(photo()[:20, :20].copy(), 3.0, "x.png", (0, 0, 20, 20))
    backend.emit(UnitPatches(DEFAULT_LAYER, 99, (patch,)))  # not the selected unit
    qtbot.wait(60)
    assert not window.patches_view.dataset.showing_patches


def test_clicking_a_crop_opens_the_whole_image_with_its_box(qtbot, photos) -> None:
    w = make_window(qtbot, FakeBackend(photos=photos))
    w.unit_pane.tabs.setCurrentIndex(PATCHES_TAB)
    qtbot.waitUntil(lambda: w.patches_view.dataset.showing_patches)
    tile = w.patches_view.dataset.grid.tiles[1]
    patch = tile.patch
    qtbot.mouseClick(tile, Qt.MouseButton.LeftButton, pos=tile.rect().center())
    dialog = w.patch_dialog
    qtbot.waitUntil(dialog.isVisible)
    qtbot.waitUntil(lambda: not dialog.loading)  # decoded on a pool thread
    source = skimage_photo(patch.source.rsplit("/", 1)[-1].removesuffix(".png"))
    shown = qimage_to_rgb(dialog.image)
    assert shown.shape == source.shape  # the whole image, not the crop
    y0, x0, y1, x1 = patch.box
    inside = (slice(y0 + 6, y1 - 6), slice(x0 + 6, x1 - 6))
    np.testing.assert_array_equal(shown[inside], source[inside])  # photo untouched inside
    edge = shown[y0, x0 + 5 : x1 - 5].astype(int)  # the top edge of the box is drawn
    assert np.abs(edge - (245, 165, 36)).max() <= 2
    assert patch.source in dialog.caption.text() and f"{patch.value:.3f}" in dialog.caption.text()


def test_live_top_updates_the_live_tab_only_when_it_changes(window, backend, qtbot) -> None:
    live = window.patches_view.live
    qtbot.waitUntil(lambda: live.showing_patches)
    expected = live_top(DEFAULT_LAYER, 0)
    assert live.grid.captions() == [f"{p.value:.2f}" for p in expected]
    assert live.grid.tiles[0].patch is expected[0]
    # the same patches in a new tuple: nothing is redrawn
    assert window.patches_view.set_live(tuple(expected)) is False
    window.select_unit(3)
    qtbot.waitUntil(lambda: live.grid.tiles[0].patch is live_top(DEFAULT_LAYER, 3)[0])
    assert live.grid.captions()[0] == f"{live_top(DEFAULT_LAYER, 3)[0].value:.2f}"


# ---------------------------------------------------------------- preferred image


def test_preferred_previews_then_final(window: MainWindow, backend, qtbot) -> None:
    window.unit_pane.tabs.setCurrentIndex(PREFERRED_TAB)
    view = window.preferred_view
    backend.emit(FakeBackend.preferred(DEFAULT_LAYER, 0, 16))
    qtbot.waitUntil(lambda: view.current is not None and view.current.step == 16)
    np.testing.assert_array_equal(view.image.image, backend.preferred(DEFAULT_LAYER, 0, 16).image)
    assert view.progress.isVisible() and view.progress.value() == 16
    assert view.progress.maximum() == 64
    backend.emit(FakeBackend.preferred(DEFAULT_LAYER, 0, 40))
    qtbot.waitUntil(lambda: view.progress.value() == 40)
    backend.emit(FakeBackend.preferred(DEFAULT_LAYER, 0, 64))
    qtbot.waitUntil(lambda: view.current.done)
    assert not view.progress.isVisible()
    assert view.values.text() == "activation 18.00 (best in dataset 11.60)"
    np.testing.assert_array_equal(view.image.image, backend.preferred(DEFAULT_LAYER, 0, 64).image)
    # a preview for another unit (a stale render) does not replace it
    backend.emit(FakeBackend.preferred(DEFAULT_LAYER, 9, 8))
    qtbot.wait(60)
    assert view.current.unit == 0 and view.current.done


def test_render_layer_button_and_progress(window: MainWindow, backend, qtbot) -> None:
    window.unit_pane.tabs.setCurrentIndex(PREFERRED_TAB)
    view = window.preferred_view
    qtbot.mouseClick(view.render_layer_button, Qt.MouseButton.LeftButton)
    assert backend.called("start_render_layer") == [DEFAULT_LAYER]
    backend.emit(JobProgress(JobKind.RENDER_LAYER, 30, 240, "30 / 240 units"))
    qtbot.waitUntil(lambda: view.layer_progress.value() == 30)
    assert view.layer_progress.maximum() == 240 and not view.render_layer_button.isEnabled()
    qtbot.mouseClick(view.layer_cancel, Qt.MouseButton.LeftButton)
    assert backend.called("cancel_job") == [JobKind.RENDER_LAYER]
    qtbot.waitUntil(lambda: not view.layer_progress.isVisible())
    assert view.render_layer_button.isEnabled()


# ---------------------------------------------------------------- jobs


def test_job_progress_widget_and_its_cancel(window: MainWindow, backend, qtbot) -> None:
    backend.emit(JobProgress(JobKind.SCAN, 1240, 5000, "1,240 / 5,000 images · ETA 44 s"))
    qtbot.waitUntil(lambda: JobKind.SCAN in window.jobs)
    widget = window.jobs[JobKind.SCAN]
    assert (widget.bar.value(), widget.bar.maximum()) == (1240, 5000)
    assert widget.toolTip() == "1,240 / 5,000 images · ETA 44 s"
    assert window.cancel_actions[JobKind.SCAN].isEnabled()
    qtbot.mouseClick(widget.cancel, Qt.MouseButton.LeftButton)
    assert backend.called("cancel_job") == [JobKind.SCAN]
    qtbot.waitUntil(lambda: JobKind.SCAN not in window.jobs)
    assert "scan: cancelled" in window.notice_label.text()
    assert not window.cancel_actions[JobKind.SCAN].isEnabled()


def test_finished_scan_requests_the_unit_again(window: MainWindow, backend, qtbot) -> None:
    window.start_scan("/data/imgs")
    assert backend.called("start_scan") == [("/data/imgs", DEFAULT_LAYER)]
    qtbot.waitUntil(lambda: JobKind.SCAN in window.jobs)
    before = len(backend.called("request_unit"))
    backend.emit(JobFinished(JobKind.SCAN, True, "500 images, 2 unreadable"))
    qtbot.waitUntil(lambda: len(backend.called("request_unit")) == before + 1)
    assert backend.called("request_unit")[-1] == (DEFAULT_LAYER, 0)
    assert JobKind.SCAN not in window.jobs
    assert "500 images, 2 unreadable" in window.notice_label.text()


def test_analysis_menu_starts_jobs(window: MainWindow, backend, monkeypatch) -> None:
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "/data/val")
    window.scan_action.trigger()
    window.render_layer_action.trigger()
    window.ablation_action.trigger()
    assert backend.called("start_scan") == [("/data/val", DEFAULT_LAYER)]
    assert backend.called("start_render_layer") == [DEFAULT_LAYER]
    assert backend.called("start_ablation") == [("/data/val", DEFAULT_LAYER)]
    assert window.center_tabs.currentWidget() is window.ablation_pane
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "")
    window.scan_action.trigger()  # a cancelled dialog starts nothing
    assert len(backend.called("start_scan")) == 1


# ---------------------------------------------------------------- ablation curves


def test_ablation_curves_and_selectivity_marker(window: MainWindow, backend, qtbot) -> None:
    pane = window.ablation_pane
    assert pane.stack.currentIndex() == 0  # the how-to placeholder
    curves = ablation_curves(DEFAULT_LAYER)
    window.select_unit(37)
    backend.emit(curves)
    qtbot.waitUntil(lambda: pane.curves is curves)
    assert set(pane.lines) == {"random", "selective first", "selective last"}
    x, y = pane.lines["selective first"].getData()
    np.testing.assert_allclose(x, 100 * curves.fractions)
    np.testing.assert_allclose(y, curves.curves["selective first"][0])
    assert set(pane.bands) == {"random"}  # only random has a spread over seeds
    assert pane.curves_plot.getPlotItem().getAxis("left").labelText == "accuracy"
    _edges, counts = pane.histogram.getData()
    assert int(np.sum(counts)) == len(curves.selectivity) == 240
    assert pane.marker_value() == pytest.approx(float(curves.selectivity[37]))
    assert pane.marker_label.toPlainText() == f"unit 37: {curves.selectivity[37]:.3f}"
    window.select_unit(5)  # the marker follows the selection
    assert pane.marker_value() == pytest.approx(float(curves.selectivity[5]))
    assert window.select_layer("_conv_head")  # curves of another layer: no marker
    assert pane.marker_value() is None


def test_help_lists_the_new_keys(window: MainWindow, qtbot) -> None:
    press(qtbot, window, Qt.Key.Key_H)
    text = window.help_overlay.rows_text()
    assert "Cycle attribution mode" in text and "Delete / restore selected unit" in text
    assert ">B<" in text and ">D<" in text


def test_overlay_position_helpers_are_consistent(window: MainWindow) -> None:
    p = window.unit_pane.image.mapFromScene(window.unit_pane.scene_pos_of_cell(4, 6))
    assert (int(p.y()), int(p.x())) == (4, 6)
    assert isinstance(window.unit_pane.scene_pos_of_cell(0, 0), QPointF)


def test_patch_source_is_decoded_off_the_gui_thread_and_stale_ones_dropped(qtbot, tmp_path,
                                                                            monkeypatch):
    import threading

    from app.gui import patches_view
    from app.gui.patches_view import PatchDialog
    from app.gui.qimages import rgb_to_qimage

    threads: list[int] = []
    real = patches_view.load_source_image

    def spy(path, box):
        threads.append(threading.get_ident())  # not current_thread(): no dummy Thread left
        return real(path, box)

    monkeypatch.setattr(patches_view, "load_source_image", spy)
    photo_a, photo_b = skimage_photo("astronaut"), skimage_photo("coffee")
    import cv2

    for name, img in (("a.png", photo_a), ("b.png", photo_b)):
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    dialog = PatchDialog()
    qtbot.addWidget(dialog)
    a = Patch(photo_a[:10, :10].copy(), 1.0, str(tmp_path / "a.png"), (0, 0, 10, 10))
    b = Patch(photo_b[:10, :10].copy(), 2.0, str(tmp_path / "b.png"), (0, 0, 10, 10))
    dialog.show_patch(a)
    assert dialog.loading and dialog.image.width() == 10  # the crop, at once
    dialog.show_patch(b)  # a newer click before a's decode is shown
    qtbot.waitUntil(lambda: not dialog.loading)
    assert dialog.wait_idle()
    qtbot.wait(20)  # a's late result, if any, has been delivered and must have been dropped
    assert (dialog.image.height(), dialog.image.width()) == photo_b.shape[:2]
    assert "activation 2.000" in dialog.caption.text()
    # a's decode arriving now (a slow disk) must not replace b
    dialog._loaded.done.emit(dialog._request - 1, rgb_to_qimage(photo_a), "late")
    qtbot.wait(20)
    assert (dialog.image.height(), dialog.image.width()) == photo_b.shape[:2]
    assert threads and threading.main_thread().ident not in threads


def test_load_source_image_applies_exif_orientation_and_bounds_huge_images(tmp_path):
    from PIL import Image

    from app.capture.images import read_image
    from app.gui.patches_view import MAX_SOURCE_SIDE, load_source_image

    # a phone photo stored landscape with "rotate 90° to show" in its EXIF (orientation 6)
    stored = skimage_photo("coffee")  # 400×600
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif.tobytes())
    scanned = read_image(tmp_path / "phone.jpg")  # what the scan computed its boxes on
    assert scanned.shape[:2] == (600, 400)
    image, where = load_source_image(str(tmp_path / "phone.jpg"), (10, 20, 50, 60))
    assert (image.height(), image.width()) == scanned.shape[:2] and where == "400×600"

    wide = np.zeros((64, MAX_SOURCE_SIDE * 2, 3), np.uint8)
    wide[:, MAX_SOURCE_SIDE:] = 255  # right half white: the box's position is checkable
    Image.fromarray(wide).save(tmp_path / "wide.png")
    image, where = load_source_image(str(tmp_path / "wide.png"), (0, 0, 64, 64))
    assert image.width() == MAX_SOURCE_SIDE and image.height() == 32
    assert where == f"{MAX_SOURCE_SIDE * 2}×64, shown at {MAX_SOURCE_SIDE}×32"
    shown = qimage_to_rgb(image)
    assert shown[:, : MAX_SOURCE_SIDE // 2 - 2].max() > 0  # the (scaled) box on the black half
    assert shown[5:-5, 40:MAX_SOURCE_SIDE // 2 - 2].max() == 0  # nothing drawn beyond it

    missing, why = load_source_image(str(tmp_path / "gone.jpg"), (0, 0, 1, 1))
    assert missing.isNull() and why == "not on disk"
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    bad, why = load_source_image(str(tmp_path / "bad.jpg"), (0, 0, 1, 1))
    assert bad.isNull() and why


# ---------------------------------------------------------------- preferred images in the grid


def test_g_shows_the_layers_preferred_images_in_the_grid_and_back(window: MainWindow, backend,
                                                                   qtbot) -> None:
    live_mosaic = window.last_result.mosaic
    press(qtbot, window, Qt.Key.Key_G)
    assert backend.called("request_preferred_grid")[0][0] == DEFAULT_LAYER
    expected = FakeBackend.preferred_grid(DEFAULT_LAYER, window.grid.aspect())
    qtbot.waitUntil(lambda: window.grid.image.image is not None
                    and window.grid.image.image.ndim == 3)
    np.testing.assert_array_equal(window.grid.image.image, expected.image)
    assert "preferred images of 120 of 240 units" in window.grid.title.text()
    # live results keep coming but the grid keeps the preferred images
    shown = window.results_shown
    window.select_unit(3)
    qtbot.waitUntil(lambda: window.results_shown > shown + 1)
    np.testing.assert_array_equal(window.grid.image.image, expected.image)
    # clicks map through the preferred images' own layout
    viewport = window.grid.pane.graphics.viewport()
    pos = window.grid.pane.graphics.mapFromScene(window.grid.scene_pos_of_unit(42))
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: window.unit == 42)
    assert window.grid.geometry == expected.geometry and window.grid.highlight.isVisible()
    # a finished render of a unit not shown yet refreshes it; one already shown does not
    asked = len(backend.called("request_preferred_grid"))
    backend.emit(FakeBackend.preferred(DEFAULT_LAYER, 42, 64))  # even: already in the grid
    qtbot.wait(80)
    assert len(backend.called("request_preferred_grid")) == asked
    backend.emit(FakeBackend.preferred(DEFAULT_LAYER, 43, 64))
    qtbot.waitUntil(lambda: len(backend.called("request_preferred_grid")) > asked)
    # G again: the activations are back, with their own layout
    press(qtbot, window, Qt.Key.Key_G)
    qtbot.waitUntil(lambda: window.grid.image.image.ndim == 2)
    assert window.grid.image.image.shape == live_mosaic.shape
    assert window.grid.geometry == window.last_result.geometry
    assert "channels of" in window.grid.title.text()


def test_preferred_grid_follows_the_layer_and_ignores_stale_answers(window: MainWindow,
                                                                   backend, qtbot) -> None:
    press(qtbot, window, Qt.Key.Key_G)
    qtbot.waitUntil(lambda: window.grid.image.image.ndim == 3)
    window.select_layer("_blocks.10._project_conv")
    qtbot.waitUntil(lambda: ("_blocks.10._project_conv", window.grid.aspect())
                    in backend.called("request_preferred_grid"))
    expected = FakeBackend.preferred_grid("_blocks.10._project_conv", window.grid.aspect())
    qtbot.waitUntil(lambda: window.grid.geometry == expected.geometry)
    # an answer for the old layer arriving late is not shown
    backend.emit(FakeBackend.preferred_grid(DEFAULT_LAYER, window.grid.aspect()))
    qtbot.wait(80)
    assert window.grid.geometry == expected.geometry


def test_preferred_grid_follows_a_layer_render_every_few_seconds_and_at_its_end(
        window: MainWindow, backend, qtbot) -> None:
    press(qtbot, window, Qt.Key.Key_G)
    qtbot.waitUntil(lambda: window.grid.image.image.ndim == 3)
    window.start_render_layer()
    asked = len(backend.called("request_preferred_grid"))
    for done in (16, 32, 48):  # three batches within a second: at most one rebuild
        backend.emit(JobProgress(JobKind.RENDER_LAYER, done, 240, f"{done} / 240 units"))
        qtbot.wait(80)  # each answered before the next batch ends
    assert len(backend.called("request_preferred_grid")) - asked <= 1
    asked = len(backend.called("request_preferred_grid"))
    backend.emit(JobFinished(JobKind.RENDER_LAYER, True, "all 240 cached"))
    qtbot.waitUntil(lambda: len(backend.called("request_preferred_grid")) > asked)
