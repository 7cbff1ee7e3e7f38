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
from gui_driver import WindowDriver
from PyQt6.QtCore import QPointF, Qt
from PyQt6.QtWidgets import QApplication, QFileDialog

from app.core.messages import (
    AblationMode,
    AttributionMode,
    Patch,
    UnitPatches,
)
from app.core.requests import (
    AblationRequest,
    ClassUnitsRequest,
    JobEvent,
    JobState,
    PreferredGridRequest,
    PreferredImageRequest,
    RenderLayerRequest,
    ScanRequest,
)
from app.core.view import AttributionView, DeletionView
from app.gui.qimages import qimage_to_rgb
from app.gui.unit_pane import UnitTab

pytest.importorskip("pytestqt")


def _preview(image):
    """A render job's step carrying `image` (a PreferredImage), as the session sends it."""
    return JobEvent(PreferredImageRequest(image.layer, image.unit), preview=image)


def _result(request, message):
    """The end of the job that answers `request`, with its final message."""
    return JobEvent(request, 1, 1, "done", result=message, state=JobState.OK)


def open_window(qtbot, backend: FakeBackend) -> WindowDriver:
    ui = WindowDriver.open(qtbot, backend)
    ui.wait_for_results()
    return ui


@pytest.fixture
def ui(qtbot, backend: FakeBackend) -> WindowDriver:
    return open_window(qtbot, backend)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list:
    return write_photos(tmp_path_factory.mktemp("photos"))


# ---------------------------------------------------------------- attribution


def test_b_cycles_attribution_modes_in_sent_views(ui: WindowDriver, backend) -> None:
    sent = []
    for _ in range(4):
        ui.press(Qt.Key.Key_B)
        sent.append(backend.views[-1].part(AttributionView).mode)
    assert sent == [
        AttributionMode.GRADIENT, AttributionMode.DECONVNET, AttributionMode.GUIDED,
        AttributionMode.OFF,
    ]
    assert ui.action_checked(f"attribution:{AttributionMode.OFF}")


def test_attribution_shows_on_input_pane_and_status(ui: WindowDriver, backend) -> None:
    ui.press(Qt.Key.Key_B)
    expected = attribution_map(DEFAULT_LAYER, 0, AttributionMode.GRADIENT, None)
    ui.wait_until(lambda: ui.attribution_overlay() is not None
                  and ui.attribution_overlay_visible())
    np.testing.assert_array_equal(ui.attribution_overlay(), expected)
    assert not ui.overlay_visible()  # replaces the unit's map
    # stretched over the crop box the model saw, like the unit overlay
    x, y, side, _ = ui.last_result().crop
    assert ui.attribution_overlay_rect() == pytest.approx((x, y, side, side))
    ui.wait_until(lambda: ui.attribution_badge() == "gradient 18 ms/frame")
    assert ui.attribution_badge() is not None  # shown
    # the Attribution tab shows the same map
    ui.show_unit_tab(UnitTab.ATTRIBUTION)
    ui.wait_until(lambda: ui.attribution_tab_map() is not None)
    np.testing.assert_array_equal(ui.attribution_tab_map(), expected)
    # off again: the unit's map is back and the status label goes
    for _ in range(3):
        ui.press(Qt.Key.Key_B)
    assert backend.views[-1].part(AttributionView).mode == AttributionMode.OFF
    assert not ui.attribution_overlay_visible()
    assert ui.overlay_visible()
    assert ui.attribution_badge() is None


def test_clicking_the_unit_map_sets_attribution_at(ui: WindowDriver, backend) -> None:
    ui.click_map_cell(5, 9)
    view = backend.views[-1]
    assert view.part(AttributionView).at == (5, 9)
    # a click asks for attribution
    assert view.part(AttributionView).mode == AttributionMode.GRADIENT
    assert ui.marked_position() == (5, 9)  # the cell is outlined
    expected = attribution_map(DEFAULT_LAYER, 0, AttributionMode.GRADIENT, (5, 9))
    ui.wait_until(
        lambda: ui.attribution_overlay() is not None
        and np.array_equal(ui.attribution_overlay(), expected)
    )
    ui.click_map_cell(3, 4)
    assert backend.views[-1].part(AttributionView).at == (3, 4)
    ui.click_map_cell(3, 4)  # the same cell again: back to the unit's maximum
    assert backend.views[-1].part(AttributionView).at is None
    assert ui.marked_position() is None
    ui.click_map_cell(2, 2)
    ui.press(Qt.Key.Key_Escape)  # Esc clears it too (no help card open)
    assert backend.views[-1].part(AttributionView).at is None
    ui.click_map_cell(2, 2)
    ui.select_unit(8)  # a new unit: the old position means nothing
    assert (backend.views[-1].unit, backend.views[-1].part(AttributionView).at) == (8, None)


# ---------------------------------------------------------------- live ablation


def test_d_deletes_and_restores_the_selected_unit(ui: WindowDriver, backend) -> None:
    ui.select_unit(37)
    ui.press(Qt.Key.Key_D)
    assert backend.views[-1].part(DeletionView).ablated == ((DEFAULT_LAYER, (37,)),)
    assert ui.deleted_rows() == [f"{DEFAULT_LAYER}:37"]
    assert ui.delete_button_text().startswith("Restore unit")
    assert ui.grid_marked_units() == (37,)
    ui.press(Qt.Key.Key_D)
    assert backend.views[-1].part(DeletionView).ablated == ()
    assert ui.deleted_rows() == []
    assert ui.grid_marked_units() == ()
    # the button does the same as the key
    ui.click_delete_button()
    assert backend.views[-1].part(DeletionView).ablated == ((DEFAULT_LAYER, (37,)),)


def test_restore_and_restore_all(ui: WindowDriver, backend) -> None:
    for unit in (3, 12, 40):
        ui.select_unit(unit)
        ui.toggle_ablation()
    assert ui.select_layer("_conv_head")
    ui.select_unit(7)
    ui.toggle_ablation()
    assert backend.views[-1].part(DeletionView).ablated == (
        ("_blocks.5._depthwise_conv", (3, 12, 40)), ("_conv_head", (7,)),
    )
    rows = ui.deleted_rows()
    assert rows == [
        f"{DEFAULT_LAYER}:3", f"{DEFAULT_LAYER}:12", f"{DEFAULT_LAYER}:40", "_conv_head:7",
    ]
    ui.select_deleted_row(1)
    ui.click_restore()
    assert backend.views[-1].part(DeletionView).ablated == (
        ("_blocks.5._depthwise_conv", (3, 40)), ("_conv_head", (7,)),
    )
    ui.wait_until(lambda: ui.last_result().layer == "_conv_head")
    ui.wait_until(lambda: ui.grid_marked_units() == (7,))
    ui.click_restore_all()
    assert backend.views[-1].part(DeletionView).ablated == ()
    assert not ui.showing_deleted()


def test_ablation_mode_choice_is_sent(ui: WindowDriver, backend) -> None:
    ui.choose_ablation_mode(1)
    assert backend.views[-1].part(DeletionView).mode == AblationMode.MEAN
    assert ui.action_checked(f"ablation_mode:{AblationMode.MEAN}")
    ui.trigger(f"ablation_mode:{AblationMode.ZERO}")
    assert backend.views[-1].part(DeletionView).mode == AblationMode.ZERO
    assert ui.ablation_mode_choice() == AblationMode.ZERO


def test_predictions_show_intact_and_ablated_columns(ui: WindowDriver) -> None:
    assert list(ui.prediction_columns()) == [""]
    ui.toggle_ablation()
    ui.wait_until(ui.predictions_two_columns)
    columns = ui.prediction_columns()
    assert list(columns) == ["intact", "ablated"]
    assert columns["intact"][0] == ("Egyptian cat", "61.2%")
    assert columns["ablated"][0] == ("tabby, tabby cat", "33.1%")
    assert [label for label, _ in columns["ablated"]] == [p.label for p in ABLATED_PREDICTIONS]
    assert [label for label, _ in columns["intact"]] == [p.label for p in PREDICTIONS]
    ui.toggle_ablation()
    ui.wait_until(lambda: not ui.predictions_two_columns())


# ---------------------------------------------------------------- top patches


def test_selecting_a_unit_requests_it_once(ui: WindowDriver, backend) -> None:
    assert backend.asked(PreferredImageRequest) == [PreferredImageRequest(DEFAULT_LAYER, 0)]
    ui.select_unit(21)
    ui.set_frozen(True)  # a view change that is not a selection: no new request
    assert backend.asked(PreferredImageRequest) == [PreferredImageRequest(DEFAULT_LAYER, 0),
                                                  PreferredImageRequest(DEFAULT_LAYER, 21)]
    assert ui.select_layer("_conv_head")
    assert backend.asked(PreferredImageRequest)[-1] == PreferredImageRequest("_conv_head", 21)


def test_unit_patches_fill_the_grid_with_values(qtbot, photos) -> None:
    ui = open_window(qtbot, FakeBackend(photos=photos))
    ui.show_unit_tab(UnitTab.PATCHES)
    ui.select_unit(5)
    expected = dataset_patches(photos, DEFAULT_LAYER, 5)
    ui.wait_until(ui.showing_patches)
    assert len(ui.patch_captions()) == 9
    assert ui.patch_captions() == [f"{p.value:.2f}" for p in expected]
    first = ui.patch_at(0)
    assert first is not None and first.source == expected[0].source
    assert f"best {expected[0].value:.2f}" in ui.patches_info()


def test_empty_patches_show_the_note_and_a_scan_button(ui, backend, monkeypatch):
    ui.show_unit_tab(UnitTab.PATCHES)
    ui.wait_until(lambda: "No scan of" in ui.patches_note())
    assert DEFAULT_LAYER in ui.patches_note() and "deepvis scan" in ui.patches_note()
    assert not ui.showing_patches()
    assert ui.scan_button_visible()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "/data/imgs")
    ui.click_scan_button()
    assert backend.asked(ScanRequest) == [ScanRequest("/data/imgs", DEFAULT_LAYER)]


def test_stale_unit_patches_are_ignored(ui: WindowDriver, backend) -> None:
    patch = Patch(photo()[:20, :20].copy(), 3.0, "x.png", (0, 0, 20, 20))
    # an answer for a unit that is not the selected one
    backend.emit(JobEvent(PreferredImageRequest(DEFAULT_LAYER, 99),
                          preview=UnitPatches(DEFAULT_LAYER, 99, (patch,))))
    ui.wait_refreshes(1)  # the event has been handled
    assert not ui.showing_patches()


def test_clicking_a_crop_opens_the_whole_image_with_its_box(qtbot, photos) -> None:
    ui = open_window(qtbot, FakeBackend(photos=photos))
    ui.show_unit_tab(UnitTab.PATCHES)
    ui.wait_until(ui.showing_patches)
    patch = ui.click_patch(1)
    ui.wait_until(ui.dialog_visible)
    ui.wait_until(lambda: not ui.dialog_loading())  # decoded on a pool thread
    source = skimage_photo(patch.source.rsplit("/", 1)[-1].removesuffix(".png"))
    shown = qimage_to_rgb(ui.dialog_image())
    assert shown.shape == source.shape  # the whole image, not the crop
    y0, x0, y1, x1 = patch.box
    inside = (slice(y0 + 6, y1 - 6), slice(x0 + 6, x1 - 6))
    np.testing.assert_array_equal(shown[inside], source[inside])  # photo untouched inside
    edge = shown[y0, x0 + 5 : x1 - 5].astype(int)  # the top edge of the box is drawn
    assert np.abs(edge - (245, 165, 36)).max() <= 2
    assert patch.source in ui.dialog_caption() and f"{patch.value:.3f}" in ui.dialog_caption()


def test_live_top_updates_the_live_tab_only_when_it_changes(ui: WindowDriver) -> None:
    ui.wait_until(lambda: ui.showing_patches("live"))
    expected = live_top(DEFAULT_LAYER, 0)
    assert ui.patch_captions("live") == [f"{p.value:.2f}" for p in expected]
    assert ui.patch_at(0, "live") is expected[0]
    # the same patches in a new tuple: nothing is redrawn
    assert ui.feed_live_patches(tuple(expected)) is False
    ui.select_unit(3)
    ui.wait_until(lambda: ui.patch_at(0, "live") is live_top(DEFAULT_LAYER, 3)[0])
    assert ui.patch_captions("live")[0] == f"{live_top(DEFAULT_LAYER, 3)[0].value:.2f}"


# ---------------------------------------------------------------- preferred image


def test_preferred_previews_then_final(ui: WindowDriver, backend) -> None:
    ui.show_unit_tab(UnitTab.PREFERRED)

    def step() -> int | None:
        current = ui.preferred_current()
        return None if current is None else current.step

    backend.emit(_preview(FakeBackend.preferred(DEFAULT_LAYER, 0, 16)))
    ui.wait_until(lambda: step() == 16)
    np.testing.assert_array_equal(ui.preferred_image(),
                                  backend.preferred(DEFAULT_LAYER, 0, 16).image)
    assert ui.preferred_progress() == (16, 64)  # shown, at step 16 of 64
    backend.emit(_preview(FakeBackend.preferred(DEFAULT_LAYER, 0, 40)))
    ui.wait_until(lambda: (ui.preferred_progress() or (0, 0))[0] == 40)
    backend.emit(_preview(FakeBackend.preferred(DEFAULT_LAYER, 0, 64)))
    ui.wait_until(lambda: step() == 64)
    current = ui.preferred_current()
    assert current is not None and current.done
    assert ui.preferred_progress() is None  # hidden
    assert ui.preferred_values() == "activation 18.00 (best in dataset 11.60)"
    np.testing.assert_array_equal(ui.preferred_image(),
                                  backend.preferred(DEFAULT_LAYER, 0, 64).image)
    # a preview for another unit (a stale render) does not replace it
    backend.emit(_preview(FakeBackend.preferred(DEFAULT_LAYER, 9, 8)))
    ui.wait_refreshes(1)
    current = ui.preferred_current()
    assert current is not None and current.unit == 0 and current.done


def test_render_layer_button_and_progress(ui: WindowDriver, backend) -> None:
    ui.show_unit_tab(UnitTab.PREFERRED)
    ui.click_render_layer()
    assert backend.asked(RenderLayerRequest) == [RenderLayerRequest(DEFAULT_LAYER)]
    backend.emit(JobEvent(RenderLayerRequest(DEFAULT_LAYER), 30, 240, "30 / 240 units"))
    ui.wait_until(lambda: (ui.layer_render_progress() or (0, 0))[0] == 30)
    assert ui.layer_render_progress() == (30, 240) and not ui.render_layer_enabled()
    ui.click_cancel_render_layer()
    assert backend.called("cancel") == ["render_layer"]
    ui.wait_until(lambda: ui.layer_render_progress() is None)
    assert ui.render_layer_enabled()


# ---------------------------------------------------------------- jobs


def test_job_progress_widget_and_its_cancel(ui: WindowDriver, backend) -> None:
    backend.emit(JobEvent(ScanRequest("/data/imgs", DEFAULT_LAYER), 1240, 5000,
                          "1,240 / 5,000 images · ETA 44 s"))
    ui.wait_until(lambda: ui.job_progress("scan") is not None)
    assert ui.job_progress("scan") == (1240, 5000)
    assert ui.job_tooltip("scan") == "1,240 / 5,000 images · ETA 44 s"
    assert ui.action_enabled("cancel:scan")
    ui.click_job_cancel("scan")
    assert backend.called("cancel") == ["scan"]
    ui.wait_until(lambda: ui.job_progress("scan") is None)
    assert "scan: cancelled" in ui.notice_text()
    assert not ui.action_enabled("cancel:scan")


def test_finished_scan_requests_the_unit_again(ui: WindowDriver, backend) -> None:
    ui.start_scan("/data/imgs")
    assert backend.asked(ScanRequest) == [ScanRequest("/data/imgs", DEFAULT_LAYER)]
    ui.wait_until(lambda: ui.job_progress("scan") is not None)
    before = len(backend.asked(PreferredImageRequest))
    backend.emit(JobEvent(ScanRequest("/data/imgs", DEFAULT_LAYER), 1, 1,
                          "500 images, 2 unreadable", state=JobState.OK))
    ui.wait_until(lambda: len(backend.asked(PreferredImageRequest)) == before + 1)
    assert backend.asked(PreferredImageRequest)[-1] == PreferredImageRequest(DEFAULT_LAYER, 0)
    assert ui.job_progress("scan") is None
    assert "500 images, 2 unreadable" in ui.notice_text()


def test_analysis_menu_starts_jobs(ui: WindowDriver, backend, monkeypatch) -> None:
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "/data/val")
    ui.trigger("scan")
    ui.trigger("render_layer")
    ui.trigger("ablation")
    assert backend.asked(ScanRequest) == [ScanRequest("/data/val", DEFAULT_LAYER)]
    assert backend.asked(RenderLayerRequest) == [RenderLayerRequest(DEFAULT_LAYER)]
    assert backend.asked(AblationRequest) == [AblationRequest("/data/val", DEFAULT_LAYER)]
    assert ui.showing_ablation_tab()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "")
    ui.trigger("scan")  # a cancelled dialog starts nothing
    assert len(backend.asked(ScanRequest)) == 1


# ---------------------------------------------------------------- ablation curves


def test_ablation_curves_and_selectivity_marker(ui: WindowDriver, backend) -> None:
    assert not ui.ablation_showing_curves()  # the how-to placeholder
    curves = ablation_curves(DEFAULT_LAYER)
    ui.select_unit(37)
    backend.emit(_result(AblationRequest("/data", DEFAULT_LAYER), curves))
    ui.wait_until(lambda: ui.ablation_curves() is curves)
    assert ui.ablation_orders() == {"random", "selective first", "selective last"}
    x, y = ui.ablation_line("selective first")
    np.testing.assert_allclose(x, 100 * curves.fractions)
    np.testing.assert_allclose(y, curves.curves["selective first"][0])
    assert ui.ablation_bands() == {"random"}  # only random has a spread over seeds
    assert ui.ablation_metric() == "accuracy"
    counts = ui.ablation_histogram_counts()
    assert int(np.sum(counts)) == len(curves.selectivity) == 240
    assert ui.ablation_marker() == pytest.approx(float(curves.selectivity[37]))
    assert ui.ablation_marker_text() == f"unit 37: {curves.selectivity[37]:.3f}"
    ui.select_unit(5)  # the marker follows the selection
    assert ui.ablation_marker() == pytest.approx(float(curves.selectivity[5]))
    assert ui.select_layer("_conv_head")  # curves of another layer: no marker
    assert ui.ablation_marker() is None


def test_help_lists_the_new_keys(ui: WindowDriver) -> None:
    ui.press(Qt.Key.Key_H)
    text = ui.help_text()
    assert "Cycle attribution mode" in text and "Delete / restore selected unit" in text
    assert ">B<" in text and ">D<" in text


def test_overlay_position_helpers_are_consistent(ui: WindowDriver) -> None:
    assert ui.unit_cell_at(ui.unit_cell_scene_pos(4, 6)) == (4, 6)
    assert isinstance(ui.unit_cell_scene_pos(0, 0), QPointF)


def test_patch_source_is_decoded_off_the_gui_thread_and_stale_ones_dropped(qtbot, tmp_path,
                                                                            monkeypatch):
    import threading

    from app.gui import patch_dialog
    from app.gui.patch_dialog import PatchDialog
    from app.gui.qimages import rgb_to_qimage

    threads: list[int] = []
    real = patch_dialog.load_source_image

    def spy(path, box):
        threads.append(threading.get_ident())  # not current_thread(): no dummy Thread left
        return real(path, box)

    monkeypatch.setattr(patch_dialog, "load_source_image", spy)
    photo_a, photo_b = skimage_photo("astronaut"), skimage_photo("coffee")
    import cv2

    for name, img in (("a.png", photo_a), ("b.png", photo_b)):
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    dialog = PatchDialog()
    qtbot.addWidget(dialog)
    a = Patch(photo_a[:10, :10].copy(), 1.0, str(tmp_path / "a.png"), (0, 0, 10, 10))
    b = Patch(photo_b[:10, :10].copy(), 2.0, str(tmp_path / "b.png"), (0, 0, 10, 10))
    request_a = dialog.show_patch(a)
    assert dialog.loading and dialog.image.width() == 10  # the crop, at once
    dialog.show_patch(b)  # a newer click before a's decode is shown
    qtbot.waitUntil(lambda: not dialog.loading)
    assert dialog.wait_idle()
    QApplication.processEvents()  # a's late result, if any, is delivered now: and dropped
    assert (dialog.image.height(), dialog.image.width()) == photo_b.shape[:2]
    assert "activation 2.000" in dialog.caption_text()
    # a's decode arriving now (a slow disk) must not replace b
    dialog.deliver_source(request_a, rgb_to_qimage(photo_a), "late")
    assert (dialog.image.height(), dialog.image.width()) == photo_b.shape[:2]
    assert threads and threading.main_thread().ident not in threads


def test_load_source_image_applies_exif_orientation_and_bounds_huge_images(tmp_path):
    from PIL import Image

    from app.capture.images import read_image
    from app.gui.patch_dialog import MAX_SOURCE_SIDE, load_source_image

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


def grid_ndim(ui: WindowDriver) -> int:
    image = ui.grid_image()
    return -1 if image is None else image.ndim


def test_g_shows_the_layers_preferred_images_in_the_grid_and_back(ui: WindowDriver,
                                                                   backend) -> None:
    live_mosaic = ui.last_result().mosaic
    ui.press(Qt.Key.Key_G)
    assert backend.asked(PreferredGridRequest)[0].layer == DEFAULT_LAYER
    expected = FakeBackend.preferred_grid(DEFAULT_LAYER, ui.grid_aspect())
    ui.wait_until(lambda: grid_ndim(ui) == 3)
    np.testing.assert_array_equal(ui.grid_image(), expected.image)
    assert "preferred images of 120 of 240 units" in ui.grid_title()
    # live results keep coming but the grid keeps the preferred images
    shown = ui.results_shown()
    ui.select_unit(3)
    ui.wait_until(lambda: ui.results_shown() > shown + 1)
    np.testing.assert_array_equal(ui.grid_image(), expected.image)
    # clicks map through the preferred images' own layout
    ui.click_unit(42)
    ui.wait_until(lambda: ui.selected_unit() == 42)
    assert ui.grid_geometry() == expected.geometry and ui.grid_outline() is not None
    # a finished render of a unit not shown yet refreshes it; one already shown does not
    asked = len(backend.asked(PreferredGridRequest))
    backend.emit(_preview(FakeBackend.preferred(DEFAULT_LAYER, 42, 64)))  # even: in the grid
    ui.wait_refreshes(2)  # handled, and a request it made answered
    assert len(backend.asked(PreferredGridRequest)) == asked
    backend.emit(_preview(FakeBackend.preferred(DEFAULT_LAYER, 43, 64)))
    ui.wait_until(lambda: len(backend.asked(PreferredGridRequest)) > asked)
    # G again: the activations are back, with their own layout
    ui.press(Qt.Key.Key_G)
    ui.wait_until(lambda: grid_ndim(ui) == 2)
    image = ui.grid_image()
    assert image is not None and image.shape == live_mosaic.shape
    assert ui.grid_geometry() == ui.last_result().geometry
    assert "channels of" in ui.grid_title()


def test_preferred_grid_follows_the_layer_and_ignores_stale_answers(ui: WindowDriver,
                                                                   backend) -> None:
    ui.press(Qt.Key.Key_G)
    ui.wait_until(lambda: grid_ndim(ui) == 3)
    ui.select_layer("_blocks.10._project_conv")
    ui.wait_until(lambda: PreferredGridRequest("_blocks.10._project_conv", ui.grid_aspect())
                  in backend.asked(PreferredGridRequest))
    expected = FakeBackend.preferred_grid("_blocks.10._project_conv", ui.grid_aspect())
    ui.wait_until(lambda: ui.grid_geometry() == expected.geometry)
    # an answer for the old layer arriving late is not shown
    backend.emit(_result(PreferredGridRequest(DEFAULT_LAYER, ui.grid_aspect()),
                         FakeBackend.preferred_grid(DEFAULT_LAYER, ui.grid_aspect())))
    ui.wait_refreshes(2)
    assert ui.grid_geometry() == expected.geometry


def test_preferred_grid_follows_a_layer_render_every_few_seconds_and_at_its_end(
        ui: WindowDriver, backend) -> None:
    ui.press(Qt.Key.Key_G)
    ui.wait_until(lambda: grid_ndim(ui) == 3)
    ui.start_render_layer()
    asked = len(backend.asked(PreferredGridRequest))
    for done in (16, 32, 48):  # three batches within a second: at most one rebuild
        backend.emit(JobEvent(RenderLayerRequest(DEFAULT_LAYER), done, 240, f"{done} / 240 units"))
        ui.wait_refreshes(2)  # each answered before the next batch ends
    assert len(backend.asked(PreferredGridRequest)) - asked <= 1
    asked = len(backend.asked(PreferredGridRequest))
    backend.emit(JobEvent(RenderLayerRequest(DEFAULT_LAYER), 1, 1, "all 240 cached",
                          state=JobState.OK))
    ui.wait_until(lambda: len(backend.asked(PreferredGridRequest)) > asked)


def test_the_units_a_class_needs_are_plotted_in_the_ablation_tab(ui: WindowDriver, backend,
                                                                 monkeypatch, tmp_path):
    from app.core.messages import ClassUnitCurves

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    ui.trigger("class_units")  # no class picked: the top-1 prediction's
    assert backend.asked(ClassUnitsRequest) == [
        ClassUnitsRequest(str(tmp_path), DEFAULT_LAYER, PREDICTIONS[0].index)]
    assert ui.showing_ablation_tab()
    backend.emit(_result(backend.asked(ClassUnitsRequest)[0], ClassUnitCurves(
        DEFAULT_LAYER, 285, "Egyptian cat", (7, 3, 9), (0, 1, 2, 3), (0.9, 0.5, 0.2, 0.0),
        (0.8, 0.8, 0.78, 0.7), (0.0, 0.3, 0.6, 0.9), (0.0, 0.1, 0.2, 0.8), 12)))
    ui.wait_until(ui.ablation_showing_class_units)
    title = ui.ablation_class_title()
    assert "units 'Egyptian cat' needs most: 7, 3, 9" in title


def test_what_a_request_type_declares_decides_its_bar_cancel_and_notice(ui: WindowDriver,
                                                                         backend) -> None:
    from app.core.requests import LayerConceptsRequest, request_types

    cancels = {n for n in ui.window.action_set.names() if n.startswith("cancel:")}
    assert cancels == {f"cancel:{t.kind}" for t in request_types() if t.cancellable}
    assert len(cancels) == 16 and "cancel:concepts" not in cancels  # + tcav, audit, 2 atlases
    assert "cancel:concepts_learn" in cancels  # learning a dictionary, not the quiet labels
    # a quiet job: no bar and no notice at its end (its answer is the news)
    concepts = LayerConceptsRequest("_conv_head")
    backend.emit(JobEvent(concepts, 0, 1, "concept labels of _conv_head"))
    ui.wait_refreshes(2)
    assert ui.job_progress("concepts") is None
    before = ui.notice_text()
    backend.emit(JobEvent(concepts, 1, 1, "0 concept labels of _conv_head", state=JobState.OK))
    ui.wait_refreshes(2)
    assert ui.notice_text() == before and "concept labels" not in before
    # the selected unit's render: its pane shows the steps, so no bar; it can be cancelled
    render = PreferredImageRequest(DEFAULT_LAYER, 0)
    backend.emit(JobEvent(render, 3, 64, "rendering"))
    ui.wait_until(lambda: ui.action_enabled("cancel:render"))
    assert ui.job_progress("render") is None
    backend.emit(JobEvent(render, 1, 1, "preferred image ready", state=JobState.OK))
    ui.wait_until(lambda: not ui.action_enabled("cancel:render"))
    assert "render: preferred image ready" in ui.notice_text()
