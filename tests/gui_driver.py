"""Drive the main window as a user would, and read what its panes show.

Tests talk to the window through this driver only: it presses keys (through the window's
own shortcuts), triggers actions by their name in the action table, clicks tiles, rows,
cells and buttons, and reads titles, texts and images through the panes' public methods.
When the window's insides are rearranged, this file changes and the tests do not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import QEvent, QMimeData, QPoint, QPointF, Qt, QUrl
from PyQt6.QtGui import QDragEnterEvent, QDropEvent, QImage, QKeySequence
from PyQt6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSlider,
    QApplication,
    QMenu,
    QRadioButton,
    QWidget,
)
from pytestqt.qtbot import QtBot

from app.core.backend import LiveBackend
from app.core.messages import AblationCurves, AblationMode, Notice, Patch, PreferredImage
from app.core.results import Result
from app.core.settings import GuiSettings, Settings
from app.core.tiling import GridGeometry
from app.gui.blocks_view import OVERLAY_TEXT, Overlay
from app.gui.main_window import MainWindow
from app.gui.patches_view import PatchPage
from app.gui.qimages import qimage_to_rgb
from app.gui.unit_pane import UnitTab

WINDOW_SETTINGS = Settings(gui=GuiSettings(width=1400, height=900))
REFRESH_TIMEOUT_MS = 5000


class WindowDriver:
    """A user at the window: `press`, `trigger`, `click_*` act; the other methods read."""

    def __init__(self, qtbot: QtBot, window: MainWindow) -> None:
        self.qtbot = qtbot
        self.window = window
        self._panes = window.panes

    @classmethod
    def open(cls, qtbot: QtBot, backend: LiveBackend, settings: Settings = WINDOW_SETTINGS,
             **kwargs: Any) -> WindowDriver:
        """A new window on `backend`, shown, exposed and active (keys reach it)."""
        window = MainWindow(backend, settings, **kwargs)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        window.activateWindow()
        return cls(qtbot, window)

    # ------------------------------------------------------------------ waiting

    def wait_for_results(self, count: int = 1, timeout: int = REFRESH_TIMEOUT_MS) -> None:
        self.qtbot.waitUntil(lambda: self.window.results_shown >= count, timeout=timeout)

    def wait_until(self, predicate: Callable[[], object],
                   timeout: int = REFRESH_TIMEOUT_MS) -> None:
        self.qtbot.waitUntil(predicate, timeout=timeout)

    def wait_refreshes(self, count: int = 1) -> None:
        """Let the window poll its backend `count` more times.

        Events queued now are handled by the first poll; what handling them asked the
        backend for is answered by the second.
        """
        for _ in range(count):
            with self.qtbot.waitSignal(self.window.refreshed, timeout=REFRESH_TIMEOUT_MS):
                pass

    def results_shown(self) -> int:
        return self.window.results_shown

    def last_result(self) -> Result:
        result = self.window.last_result
        assert result is not None, "no result shown yet"
        return result

    # ------------------------------------------------------------------ acting

    def press(self, key: Qt.Key) -> None:
        """A key press while the layer list has focus, as after clicking a layer."""
        target = self._panes.layers.key_target()
        target.setFocus()
        self.qtbot.keyClick(target, key)

    def trigger(self, action: str) -> None:
        """Trigger an action of the action table by name (a menu click); toggles a checkable."""
        self.window.action_set[action].trigger()

    def select_unit(self, unit: int) -> None:
        self.window.view_model.select_unit(unit)

    def select_layer(self, name: str) -> bool:
        return self.window.view_model.select_layer(name)

    def set_frozen(self, frozen: bool) -> None:
        self.window.view_model.set_frozen(frozen)

    def toggle_ablation(self) -> None:
        self.window.features.ablation.toggle_ablation()

    def start_scan(self, folder: str) -> None:
        self.window.features.units.start_scan(folder)

    def start_render_layer(self) -> None:
        self.window.features.units.start_render_layer()

    def learn_concepts(self, folder: str, k: int = 32, method: str = "nmf") -> None:
        """Analysis → Learn concepts of this layer, with `folder` chosen in the dialog."""
        self.window.features.concepts.learn(folder, k, method)

    def rename_concept(self, name: str) -> None:
        """Rename concept…, with `name` typed in the dialog."""
        self.window.features.concepts.rename(name)

    def click_unit(self, unit: int) -> None:
        grid = self._panes.grid
        self._click(grid.mouse_area(), grid.tile_position(unit))

    def click_mosaic(self, y: float, x: float) -> None:
        """Click mosaic pixel (y, x) of the grid, wherever it falls (a tile or the padding)."""
        grid = self._panes.grid
        self._click(grid.mouse_area(), grid.mosaic_position(y, x))

    def hover_unit(self, unit: int) -> None:
        grid = self._panes.grid
        self.qtbot.mouseMove(grid.mouse_area(), grid.tile_position(unit))

    def leave_grid(self) -> None:
        QApplication.sendEvent(self._panes.grid.mouse_area(), QEvent(QEvent.Type.Leave))

    def click_layer_row(self, row: int) -> None:
        layers = self._panes.layers
        self._click(layers.mouse_area(), layers.reveal_row(row))

    def click_map_cell(self, y: int, x: int) -> None:
        unit = self._panes.unit
        self._click(unit.mouse_area(), unit.cell_position(y, x))

    def show_unit_tab(self, tab: UnitTab) -> None:
        self._panes.unit.show_tab(tab)

    def drop_file(self, path: Path) -> bool:
        """Drag `path` over the window and drop it; True when the drag was accepted."""
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                Qt.KeyboardModifier.NoModifier)
        enter = QDragEnterEvent(QPoint(600, 400), *args)
        QApplication.sendEvent(self.window, enter)
        QApplication.sendEvent(self.window, QDropEvent(QPointF(600, 400), *args))
        return enter.isAccepted()

    def click_delete_button(self) -> None:
        self._click(self._panes.unit.delete_button)

    def select_deleted_row(self, row: int) -> None:
        self._panes.unit.select_deleted_row(row)

    def click_restore(self) -> None:
        self._click(self._panes.unit.restore_button)

    def click_restore_all(self) -> None:
        self._click(self._panes.unit.restore_all_button)

    def choose_ablation_mode(self, index: int) -> None:
        """Pick entry `index` of the unit pane's "replace by" box."""
        self._panes.unit.mode_combo.setCurrentIndex(index)

    def click_scan_button(self) -> None:
        button = self._panes.patches.dataset.button
        assert button is not None
        self._click(button)

    def click_patch(self, index: int, page: str = "dataset") -> Patch:
        """Click the `index`-th crop of the Dataset (or Live) page; returns its patch."""
        tile = self._page(page).grid.tiles[index]
        assert tile.patch is not None
        self.qtbot.mouseClick(tile, Qt.MouseButton.LeftButton, pos=tile.rect().center())
        return tile.patch

    def feed_live_patches(self, patches: tuple[Patch, ...]) -> bool:
        """Hand the Live page patches directly; True when its grid changed."""
        return self._panes.patches.set_live(patches)

    def click_render_layer(self) -> None:
        self._click(self._panes.preferred.render_layer_button)

    def click_cancel_render_layer(self) -> None:
        self._click(self._panes.preferred.layer_cancel)

    def open_source(self, spec: str) -> None:
        self.window.open_source(spec)

    def show_result(self, result: Result) -> None:
        """Hand the window a result directly, as its poll would."""
        self.window.show_result(result)

    def scroll_messages_up(self) -> None:
        """Page up in the message log's scroll bar, as a user reading older lines would."""
        log = self._panes.messages.mouse_area()
        assert isinstance(log, QAbstractScrollArea)
        bar = log.verticalScrollBar()
        assert bar is not None
        bar.triggerAction(QAbstractSlider.SliderAction.SliderPageStepSub)

    def click_notice(self) -> None:
        self._click(self.window.status.notice_label())

    def architecture_dialog_visible(self) -> bool:
        return self._panes.architecture_dialog.isVisible()

    def architecture_choices(self) -> list[str]:
        return self._panes.architecture_dialog.choices()

    def architecture_choice(self) -> str | None:
        return self._panes.architecture_dialog.choice()

    def choose_architecture(self, name: str) -> None:
        """Pick `name` in the architecture dialog and press Open."""
        dialog = self._panes.architecture_dialog
        assert dialog.choose(name), name
        dialog.accept()

    def cancel_architecture_dialog(self) -> None:
        self._panes.architecture_dialog.reject()

    def click_job_cancel(self, kind: str) -> None:
        widget = self.window.status.job_widget(kind)
        assert widget is not None, kind
        self._click(widget.cancel)

    def close(self) -> None:
        self.window.close()

    def shutdown(self) -> None:
        self.window.shutdown()

    def save_screenshot(self, path: Path) -> Path:
        return self.window.save_screenshot(path)

    def export_pane(self, name: str, path: Path) -> Path:
        return self.window.export_pane(name, path)

    def save_unit_report(self, path: Path) -> tuple[Path, Path]:
        return self.window.save_unit_report(path)

    def showing_card(self) -> bool:
        return self._panes.showing_card()

    def card(self) -> Any:
        """The unit card (its read-only accessors: shown_map, facts_text, …)."""
        return self._panes.card

    def pane_menu(self, name: str) -> list[str]:
        """The texts of a pane's right-click menu."""
        pane = self._panes.exportable(name)
        assert pane.contextMenuPolicy() == Qt.ContextMenuPolicy.ActionsContextMenu
        return [a.text() for a in pane.actions()]

    def pane_size(self, name: str) -> tuple[int, int]:
        pane = self._panes.exportable(name)
        return pane.width(), pane.height()

    def _click(self, widget: QWidget, pos: QPoint | None = None) -> None:
        if pos is None:
            self.qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)  # at its centre
        else:
            self.qtbot.mouseClick(widget, Qt.MouseButton.LeftButton, pos=pos)

    def _page(self, page: str) -> PatchPage:
        return self._panes.patches.dataset if page == "dataset" else self._panes.patches.live

    # ------------------------------------------------------------------ the grid

    def grid_title(self) -> str:
        return self._panes.grid.title_text()

    def grid_image(self) -> np.ndarray | None:
        return self._panes.grid.shown_image()

    def grid_geometry(self) -> GridGeometry | None:
        return self._panes.grid.shown_geometry()

    def grid_lut(self) -> np.ndarray | None:
        return self._panes.grid.lut()

    def grid_aspect(self) -> float:
        return self._panes.grid.aspect()

    def grid_outline(self) -> tuple[float, float, float, float] | None:
        """(x, y, w, h) of the selection outline; None while it is hidden."""
        return self._panes.grid.highlighted_rect()

    def grid_marked_units(self) -> tuple[int, ...]:
        return self._panes.grid.marked_units

    def grid_placeholder(self) -> str | None:
        """The grid's placeholder text while it shows no image; None once it does."""
        grid = self._panes.grid
        return None if grid.showing_image() else grid.placeholder_text()

    def hover_text(self) -> str:
        return self._panes.grid.hover_text()

    def grid_tint(self) -> np.ndarray | None:
        """Each tile's value the grid is tinted by (the channels' attribution); None: no tint."""
        return self._panes.grid.tint_values()

    def grid_tile_labels(self) -> dict[int, str]:
        """The concept labels written on the tiles, by unit."""
        return self._panes.grid.tile_labels()

    def hovered_unit(self) -> int | None:
        return self._panes.grid.hovered_unit

    # ------------------------------------------------------------------ the input pane

    def input_title(self) -> str:
        return self._panes.input.title_text()

    def input_placeholder(self) -> str:
        return self._panes.input.placeholder_text()

    def unit_placeholder(self) -> str:
        """What the unit pane says while it has no map."""
        return self._panes.unit.placeholder_text()

    def input_frame(self) -> np.ndarray | None:
        return self._panes.input.frame_image()

    def overlay_image(self) -> np.ndarray | None:
        return self._panes.input.overlay_image()

    def overlay_visible(self) -> bool:
        return self._panes.input.overlay_visible()

    def overlay_rect(self) -> tuple[float, float, float, float]:
        return self._panes.input.overlay_rect()

    def attribution_overlay(self) -> np.ndarray | None:
        return self._panes.input.attribution_image()

    def attribution_overlay_visible(self) -> bool:
        return self._panes.input.attribution_visible()

    def attribution_overlay_rect(self) -> tuple[float, float, float, float]:
        return self._panes.input.attribution_rect()

    def attribution_tab_map(self) -> np.ndarray | None:
        return self._panes.attribution.shown_map()

    def explanation_overlay(self) -> np.ndarray | None:
        """The building blocks' RGBA drawn on the input (spatial or groups); None: none."""
        return self._panes.input.explanation_overlay()

    def attention_overlay(self) -> np.ndarray | None:
        return self._panes.input.attention_overlay()

    def concept_mask_image(self) -> np.ndarray | None:
        """The unit's concept mask drawn on the input; None while none is shown."""
        return self._panes.input.mask_image()

    # ------------------------------------------------------------------ the Atlas tab
    def atlas_pane(self) -> Any:
        """The Atlas tab's pane (`gui/atlas_view.AtlasPane`: its cells, filter, side panel)."""
        return self._panes.atlas

    def show_atlas_tab(self) -> None:
        self._panes.show_atlas()

    def showing_atlas_tab(self) -> bool:
        return bool(self._panes.showing_atlas())

    def show_activations_tab(self) -> None:
        self._panes.show_activations()

    def hover_crop(self, fx: float, fy: float) -> None:
        """The input view's hover signal at (fx, fy) of the crop, as a mouse move sends it."""
        self._panes.input.crop_hovered.emit(fx, fy)

    def hover_input(self, fx: float, fy: float) -> None:
        """Move the mouse to (fx, fy), fractions of the crop's width and height."""
        inp = self._panes.input
        inp.pane.graphics.scene().sigMouseMoved.emit(inp.scene_pos_in_crop(fx, fy))

    # ------------------------------------------------------------------ status, messages, help

    def notice_text(self) -> str:
        return self.window.status.notice_text()

    def notice_shown_text(self) -> str:
        """The notice as drawn (elided to the room it has)."""
        return self.window.status.notice_shown_text()

    def notice_tooltip(self) -> str:
        return self.window.status.notice_tooltip()

    def messages_show_newest(self) -> bool:
        return self._panes.messages.showing_newest()

    def stats_text(self) -> str:
        return self.window.status.stats_text()

    def model_text(self) -> str:
        return self.window.status.model_text()

    def source_text(self) -> str:
        return self.window.status.source_text()

    def attribution_caption(self) -> str:
        return self._panes.attribution.info_text()

    def attribution_placeholder(self) -> str:
        """What the Attribution tab says instead of a map ("" while it shows one)."""
        return self._panes.attribution.placeholder_text()

    def ablation_note(self) -> str:
        return self._panes.ablation.note_text()

    def ablation_note_colour(self) -> str:
        """The colour the caveat is drawn in ("#rrggbb")."""
        note = self._panes.ablation.note
        note.ensurePolished()
        return note.palette().color(note.foregroundRole()).name()

    def pane_rects(self) -> dict[str, tuple[int, int, int, int]]:
        """(x, y, w, h) of each pane's visible part, in window coordinates."""
        out = {}
        widgets = {**self._panes.pane_widgets(), "status": self.window.status}
        for name, widget in widgets.items():
            r = widget.visibleRegion().boundingRect()
            top_left = widget.mapTo(self.window, r.topLeft())
            out[name] = (top_left.x(), top_left.y(), r.width(), r.height())
        return out

    def unit_tabs_fit(self) -> bool:
        return self._panes.unit.tabs_fit()

    def notice_style(self) -> str:
        return self.window.status.notice_style()

    def notices(self) -> list[Notice]:
        return self.window.status.notices()

    def messages_text(self) -> str:
        return self._panes.messages.text()

    def attribution_badge(self) -> str | None:
        return self.window.status.attribution_text()

    def grayscale_input(self) -> bool:
        """Whether the window asks for the frame to be fed in grayscale."""
        return self.window.view_model.grayscale

    def frozen_badge(self) -> str | None:
        return self.window.status.frozen_text()

    def window_title(self) -> str:
        return self.window.windowTitle()

    def window_size(self) -> tuple[int, int]:
        return self.window.width(), self.window.height()

    def polling(self) -> bool:
        return self.window.is_polling()

    def help_visible(self) -> bool:
        return self._panes.help.isVisible()

    def help_rows(self) -> list[tuple[str, str]]:
        return self._panes.help.rows()

    def help_text(self) -> str:
        """The help card's rich text as drawn."""
        return self._panes.help.rows_text()

    # ------------------------------------------------------------------ menus

    def action_text(self, action: str) -> str:
        return self.window.action_set[action].text()

    def action_checked(self, action: str) -> bool:
        return self.window.action_set[action].isChecked()

    def action_enabled(self, action: str) -> bool:
        return self.window.action_set[action].isEnabled()

    def action_shortcuts(self, action: str) -> list[str]:
        """The action's shortcuts, spelled as Qt's portable text ("PgDown", "Ctrl+O")."""
        fmt = QKeySequence.SequenceFormat.PortableText
        return [k.toString(fmt) for k in self.window.action_set[action].shortcuts()]

    def menu_path(self, action: str) -> str | None:
        """"&File/Open camera": the menus that lead to the action; None: in no menu."""
        target = self.window.action_set[action]
        bar = self.window.menuBar()
        assert bar is not None

        def find(menu: QMenu, path: str) -> str | None:
            for item in menu.actions():
                if item is target:
                    return path
                sub = item.menu()
                if isinstance(sub, QMenu):
                    found = find(sub, f"{path}/{sub.title()}")
                    if found:
                        return found
            return None

        for top in bar.actions():
            menu = top.menu()
            if isinstance(menu, QMenu):
                found = find(menu, menu.title())
                if found:
                    return found
        return None

    def checked_in(self, group: str) -> str | None:
        """The checked item of a radio group ("colormap:gray"), or None."""
        return self.window.action_set.checked_in(group)

    # ------------------------------------------------------------------ layers and unit pane

    def layer_rows(self) -> list[str]:
        return self._panes.layers.rows()

    def current_layer_row(self) -> int:
        return self._panes.layers.current_row()

    def current_layer_text(self) -> str:
        return self.layer_rows()[self.current_layer_row()]

    def selected_unit(self) -> int:
        return self.window.view_model.unit

    def unit_title(self) -> str:
        return self._panes.unit.title_text()

    def unit_map(self) -> np.ndarray | None:
        return self._panes.unit.shown_map()

    def unit_values(self) -> str:
        return self._panes.unit.values_text()

    def marked_position(self) -> tuple[int, int] | None:
        return self._panes.unit.marked_position()

    def unit_cell_scene_pos(self, y: int, x: int) -> QPointF:
        return self._panes.unit.scene_pos_of_cell(y, x)

    def unit_cell_at(self, scene_pos: QPointF) -> tuple[int, int]:
        return self._panes.unit.cell_at_scene(scene_pos)

    def deleted_rows(self) -> list[str]:
        return self._panes.unit.deleted_rows()

    def delete_button_text(self) -> str:
        return self._panes.unit.delete_button_text()

    def showing_deleted(self) -> bool:
        return self._panes.unit.showing_deleted()

    def ablation_mode_choice(self) -> AblationMode:
        return self._panes.unit.ablation_mode()

    # ------------------------------------------------------------------ predictions

    def prediction_rows(self) -> list[tuple[str, str]]:
        return self._panes.predictions.rows()

    def prediction_columns(self) -> dict[str, list[tuple[str, str]]]:
        return self._panes.predictions.columns()

    def predictions_two_columns(self) -> bool:
        return self._panes.predictions.two_columns

    def click_prediction(self, row: int, versus: bool = False) -> None:
        """Click the `row`-th prediction's bar (picks its class); `versus`: Ctrl-click it."""
        predictions = self._panes.predictions
        x, y = predictions.bar_center(row)
        modifier = (Qt.KeyboardModifier.ControlModifier if versus
                    else Qt.KeyboardModifier.NoModifier)
        self.qtbot.mouseClick(predictions.bars(), Qt.MouseButton.LeftButton, modifier,
                              QPoint(x, y))

    def marked_predictions(self) -> dict[int, str]:
        """The classes marked on the prediction bars (picked, versus), by class index."""
        return self._panes.predictions.marked()

    # ------------------------------------------------------------------ the Why tab (blocks)

    def showing_blocks_tab(self) -> bool:
        return self._panes.showing_blocks()

    def blocks_showing_explanation(self) -> bool:
        """The Why tab shows building blocks (false before the first arrives)."""
        return self._panes.blocks.explanation is not None

    def blocks_info(self) -> str:
        return self._panes.blocks.info_text()

    def blocks_channels_title(self) -> str:
        return self._panes.blocks.channels_title.text()

    def blocks_channel_units(self) -> list[int | None]:
        """The units of the channel rows, top to bottom (for, then against)."""
        return self._panes.blocks.channels.units()

    def blocks_channel_has_icon(self, unit: int) -> bool:
        return self._panes.blocks.channels.has_icon(unit)

    def click_blocks_channel(self, row: int) -> None:
        bars = self._panes.blocks.channels
        x, y = bars.row_center(row)
        self._click(bars, QPoint(x, y))

    def blocks_group_rows(self) -> list[str]:
        """The neuron groups' row texts."""
        return self._panes.blocks.groups.texts()

    def blocks_group_has_icon(self, row: int) -> bool:
        return self._panes.blocks.groups.has_row_icon(row)

    def blocks_dictionary_units(self) -> list[int | None]:
        """The units of the "at the cursor" rows (the dictionary of the hovered position)."""
        return self._panes.blocks.dictionary.units()

    def blocks_dictionary_title(self) -> str:
        return self._panes.blocks.dictionary_title.text()

    def choose_blocks_overlay(self, overlay: Overlay) -> None:
        """Click the Why tab's radio button that draws `overlay` on the input."""
        text = OVERLAY_TEXT[overlay]
        button = next(b for b in self._panes.blocks.findChildren(QRadioButton)
                      if b.text() == text)
        self._click(button)

    def click_integrated(self) -> None:
        self._click(self._panes.blocks.integrated_button)

    # ------------------------------------------------------------------ the frame tab

    def frame_tab_visible(self) -> bool:
        return self._panes.frame_pane.isVisible()

    def frame_captions(self) -> dict[str, str]:
        """What the frame tab's pictures say, by picture ("accentuated", "inverted 0", …)."""
        return self._panes.frame_pane.captions()

    def accentuated_title(self) -> str:
        return self._panes.frame_pane.accentuated_title.text()

    def inverted_title(self) -> str:
        return self._panes.frame_pane.inverted_title.text()

    def activation_grid_title(self) -> str:
        return self._panes.frame_pane.grid_title.text()

    def show_frame_tab(self) -> None:
        """Click the centre column's "This frame" tab."""
        self._panes.show_frame()

    def frame_seed_picture(self) -> np.ndarray | None:
        """The frame as the model saw it (where accentuation and inversion start)."""
        return self._panes.frame_pane.seed_tile.picture()

    def accentuated_picture(self) -> np.ndarray | None:
        return self._panes.frame_pane.accentuated_tile.picture()

    # ------------------------------------------------------------------ the Dissection tab

    def showing_dissection_tab(self) -> bool:
        return self._panes.showing_dissection()

    def dissection_showing_summary(self) -> bool:
        """The tab shows a layer's summary (not its placeholder)."""
        return self._panes.dissection.showing_summary()

    def dissection_rows(self) -> list[str]:
        """The detector units listed, as their rows read."""
        return self._panes.dissection.unit_rows()

    def click_dissection_row(self, row: int) -> None:
        self._panes.dissection.click_row(row)

    def dissection_info(self) -> str:
        return self._panes.dissection.info.text()

    def dissection_strip_text(self) -> str:
        """The line over the selected unit's strip (its concept, or why no strip shows)."""
        return self._panes.dissection.strip_text()

    def dissection_strip(self) -> np.ndarray | None:
        """The selected unit's strip as shown (RGB), once decoded; None while there is none."""
        image = self._panes.dissection.strip_image
        return None if image is None else qimage_to_rgb(image)

    def dissection_progress_visible(self) -> bool:
        return self._panes.dissection.progress.isVisible()

    def click_dissection_cancel(self) -> None:
        self._click(self._panes.dissection.cancel)

    # ------------------------------------------------------------------ top patches

    def showing_patches(self, page: str = "dataset") -> bool:
        return self._page(page).showing_patches

    def patch_captions(self, page: str = "dataset") -> list[str]:
        return self._page(page).grid.captions()

    def shown_patches(self, page: str = "dataset") -> list[Patch]:
        return self._page(page).shown_patches()

    def patch_at(self, index: int, page: str = "dataset") -> Patch | None:
        """The patch in the `index`-th tile of the page (None: an empty tile)."""
        return self._page(page).grid.tiles[index].patch

    def patches_note(self, page: str = "dataset") -> str:
        return self._page(page).note_text()

    def scan_button_visible(self) -> bool:
        button = self._panes.patches.dataset.button
        return button is not None and button.isVisible()

    def patches_info(self) -> str:
        return self._panes.patches.info_text()

    def dialog_visible(self) -> bool:
        return self._panes.patch_dialog.isVisible()

    def dialog_loading(self) -> bool:
        return self._panes.patch_dialog.loading

    def dialog_image(self) -> QImage:
        image = self._panes.patch_dialog.image
        assert image is not None
        return image

    def dialog_caption(self) -> str:
        return self._panes.patch_dialog.caption_text()

    # ------------------------------------------------------------------ preferred image

    def preferred_current(self) -> PreferredImage | None:
        return self._panes.preferred.current

    def preferred_image(self) -> np.ndarray | None:
        return self._panes.preferred.shown_image()

    def preferred_progress(self) -> tuple[int, int] | None:
        return self._panes.preferred.render_progress()

    def preferred_values(self) -> str:
        return self._panes.preferred.values_text()

    def layer_render_progress(self) -> tuple[int, int] | None:
        return self._panes.preferred.layer_job_progress()

    def render_layer_enabled(self) -> bool:
        return self._panes.preferred.render_layer_button.isEnabled()

    # ------------------------------------------------------------------ jobs

    def job_progress(self, kind: str) -> tuple[int, int] | None:
        """(done, total) of a job's bar in the status bar; None when it has none."""
        widget = self.window.status.job_widget(kind)
        return None if widget is None else widget.progress()

    def job_tooltip(self, kind: str) -> str:
        widget = self.window.status.job_widget(kind)
        assert widget is not None, kind
        return widget.toolTip()

    # ------------------------------------------------------------------ ablation tab

    def showing_ablation_tab(self) -> bool:
        return self._panes.showing_ablation()

    def ablation_showing_curves(self) -> bool:
        return self._panes.ablation.showing_curves()

    def ablation_curves(self) -> AblationCurves | None:
        return self._panes.ablation.curves

    def ablation_line(self, order: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._panes.ablation.lines[order].getData()
        return x, y

    def ablation_orders(self) -> set[str]:
        return set(self._panes.ablation.lines)

    def ablation_bands(self) -> set[str]:
        """The orders drawn with a spread band."""
        return set(self._panes.ablation.bands)

    def ablation_metric(self) -> str:
        return self._panes.ablation.metric_label()

    def ablation_histogram_counts(self) -> np.ndarray:
        histogram = self._panes.ablation.histogram
        assert histogram is not None
        _edges, counts = histogram.getData()
        return np.asarray(counts)

    def ablation_marker(self) -> float | None:
        return self._panes.ablation.marker_value()

    def ablation_marker_text(self) -> str:
        return self._panes.ablation.marker_text()

    def ablation_showing_class_units(self) -> bool:
        """The tab plots the units a class needs."""
        return self._panes.ablation.showing_class_units()

    def ablation_class_title(self) -> str:
        return self._panes.ablation.class_plot.getPlotItem().titleLabel.text

    # ------------------------------------------------------------------ what fits the screen

    def help_card_inside_window(self) -> bool:
        """Whether the whole help card (every row and its footer) is inside the window."""
        help_ = self._panes.help
        card = help_.card.geometry()
        return help_.rect().contains(card) and card.height() >= help_.card.sizeHint().height()

    def card_headings_fit(self) -> dict[str, bool]:
        """Each unit-card heading over a picture: whether its whole text is drawn."""
        card = self._panes.card
        boxes = {"map": card.map_box, "attribution": card.attribution_box,
                 "preferred": card.preferred_box}
        return {name: not box.heading.is_elided() for name, box in boxes.items()}

    def card_heading(self, name: str) -> str:
        card = self._panes.card
        box = {"map": card.map_box, "attribution": card.attribution_box,
               "preferred": card.preferred_box, "patches": card.patches_box}[name]
        return str(box.heading.text())

    def prediction_label_room(self) -> float:
        """Pixels a class name has on its bar in the two-column (intact | ablated) layout."""
        return float(self._panes.predictions.bars().label_room(two_columns=True))

    def prediction_text_width(self, text: str) -> int:
        return int(self._panes.predictions.bars().label_width(text))

    def layer_row_shown(self, row: int) -> str:
        """The layer list's row as drawn: elided to the list's width the way the list does."""
        return str(self._panes.layers.shown_text(row))

    def grid_title_elided(self) -> bool:
        return bool(self._panes.grid.title_elided())

    def frame_captions_fit(self) -> dict[str, bool]:
        """This frame's picture captions: whether each is drawn whole (wrapped, not cut)."""
        return self._panes.frame_pane.captions_fit()

    def grid_drawn_labels(self) -> dict[int, tuple[str, float]]:
        """Concept labels as the tiles draw them: (text, the tile's width on screen)."""
        return self._panes.grid.drawn_tile_labels()

    def text_width(self, text: str) -> int:
        """Pixels `text` takes in the window's font (what a label on a tile uses)."""
        return self.window.fontMetrics().horizontalAdvance(text)
