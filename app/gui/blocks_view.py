"""Why this prediction: the building blocks of interpretability (Olah et al. 2018), live.

The pane answers for the shown layer and the explained class (a click on a prediction;
Ctrl-click: the class it is weighed against): which channels push the score up and down
(attribution = activation × gradient, summed over positions), how the layer's activations
split into neuron groups and what each group contributes, and — for the position under
the mouse on the input — the semantic dictionary: its most active channels. Channels are
shown by their preferred images (icons, cached or rendered small in the background).
Where in the input it all happens is drawn on the input pane: the spatial attribution
(orange for, blue against) or the groups, each in its colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np
from PyQt6.QtCore import QRectF, QSize, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QMouseEvent, QPainter, QPaintEvent, QPixmap
from PyQt6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.core.masks import upsample_bilinear
from app.core.messages import IntegratedExplanation
from app.core.results import BuildingBlocks
from app.gui import theme
from app.gui.image_pane import Panel
from app.gui.qimages import rgb_to_qimage

FOR_COLOR = (255, 150, 60)  # attribution towards the explained class
AGAINST_COLOR = (80, 160, 255)  # towards the other class, or against this one
GROUP_COLORS = ((255, 99, 99), (99, 210, 120), (90, 160, 255), (255, 205, 80),
                (200, 120, 255), (80, 220, 220), (255, 140, 200), (170, 170, 170))
CHANNEL_ROWS = 8  # channels shown each way, as in the article's attribution lists
OVERLAY_SIDE = 112  # the maps are upsampled this far before they are stretched over the crop


class Overlay(StrEnum):
    """What the input pane shows while the building blocks are shown."""

    SPATIAL = "spatial attribution"
    GROUPS = "neuron groups"
    NONE = "none"


OVERLAY_TEXT = {Overlay.SPATIAL: "attribution", Overlay.GROUPS: "groups", Overlay.NONE: "none"}


def spatial_rgba(spatial: np.ndarray) -> np.ndarray:
    """(H, W) signed attribution → (S, S, 4) uint8: orange where it raises the score, blue
    where it lowers it, transparent where it does nothing (scaled by the largest)."""
    up = upsample_bilinear(spatial, OVERLAY_SIDE, OVERLAY_SIDE)
    top = float(np.abs(up).max()) or 1.0
    rgba = np.zeros((OVERLAY_SIDE, OVERLAY_SIDE, 4), np.uint8)
    rgba[..., :3] = np.where(up[..., None] >= 0, FOR_COLOR, AGAINST_COLOR)
    rgba[..., 3] = np.clip(np.abs(up) / top * 230, 0, 230).astype(np.uint8)
    return rgba


def groups_rgba(group_spatial: np.ndarray) -> np.ndarray:
    """(g, H, W) non-negative group maps → (S, S, 4) uint8: each position in the colour of
    its strongest group, as opaque as that group is strong there."""
    k = group_spatial.shape[0]
    up = np.stack([upsample_bilinear(m, OVERLAY_SIDE, OVERLAY_SIDE) for m in group_spatial])
    strongest = up.argmax(0)
    strength = up.max(0)
    top = float(strength.max()) or 1.0
    palette = np.array([GROUP_COLORS[i % len(GROUP_COLORS)] for i in range(k)], np.uint8)
    rgba = np.zeros((OVERLAY_SIDE, OVERLAY_SIDE, 4), np.uint8)
    rgba[..., :3] = palette[strongest]
    rgba[..., 3] = np.clip(strength / top * 200, 0, 200).astype(np.uint8)
    return rgba


class BarRows(QWidget):
    """Rows of icon, text and a signed bar, painted in one pass; a click picks a row's unit."""

    unit_clicked = pyqtSignal(int)

    ROW_H = 30

    def __init__(self, rows: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._capacity = rows
        self._rows: list[tuple[int | None, str, float, tuple[int, int, int]]] = []
        self._icons: dict[int, QPixmap] = {}
        self._row_icons: list[QPixmap] = []  # by row, before the units' (a group's own)
        self._scale = 1.0
        self.setMinimumHeight(self.ROW_H * 3)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def sizeHint(self) -> QSize:
        return QSize(260, self.ROW_H * self._capacity)

    def set_rows(self, rows: Sequence[tuple[int | None, str, float, tuple[int, int, int]]],
                 scale: float) -> None:
        """(unit or None, text, value, bar colour) per row; bars are value / `scale`."""
        self._rows = list(rows[: self._capacity])
        self._scale = scale or 1.0
        self.update()

    def set_icon(self, unit: int, icon: QPixmap) -> None:
        self._icons[unit] = icon
        if any(u == unit for u, *_ in self._rows):
            self.update()

    def clear_icons(self) -> None:
        self._icons.clear()
        self._row_icons = []
        self.update()

    def set_row_icons(self, icons: list[QPixmap]) -> None:
        """Icons by row, shown instead of the row unit's (a neuron group's direction)."""
        self._row_icons = list(icons)
        self.update()

    def has_row_icon(self, row: int) -> bool:
        return row < len(self._row_icons)

    def texts(self) -> list[str]:
        return [text for _, text, _, _ in self._rows]

    def units(self) -> list[int | None]:
        return [u for u, *_ in self._rows]

    def has_icon(self, unit: int) -> bool:
        return unit in self._icons

    def row_center(self, row: int) -> tuple[int, int]:
        return self.width() // 2, int(self._row_h() * (row + 0.5))

    def _row_h(self) -> float:
        return min(float(self.ROW_H), self.height() / max(len(self._rows), 1))

    def paintEvent(self, event: QPaintEvent | None) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF() - 1.0, 8.0))
        painter.setFont(font)
        row_h = self._row_h()
        icon = max(int(row_h) - 4, 8)
        text_w = 120.0
        for i, (unit, text, value, color) in enumerate(self._rows):
            top = i * row_h
            pixmap = (self._row_icons[i] if i < len(self._row_icons) else
                      self._icons.get(unit) if unit is not None else None)
            target = QRectF(2, top + 2, icon, icon)
            if pixmap is not None:
                painter.drawPixmap(target, pixmap, QRectF(pixmap.rect()))
            else:
                painter.fillRect(target, QColor(theme.PANEL_LIGHT))
            painter.setPen(QColor(theme.TEXT))
            painter.drawText(QRectF(icon + 8, top, text_w, row_h),
                             Qt.AlignmentFlag.AlignVCenter, text)
            left = icon + 12 + text_w
            width = max(self.width() - left - 4, 10)
            frac = min(abs(value) / self._scale, 1.0)
            painter.fillRect(QRectF(left, top + row_h * 0.3, width * frac, row_h * 0.4),
                             QColor(*color))

    def mouseReleaseEvent(self, event: QMouseEvent | None) -> None:
        if event is None or event.button() != Qt.MouseButton.LeftButton:
            return
        row = int(event.position().y() // self._row_h())
        if 0 <= row < len(self._rows) and self._rows[row][0] is not None:
            unit = self._rows[row][0]
            assert unit is not None
            self.unit_clicked.emit(unit)


class BlocksPane(Panel):
    """The building blocks of the shown layer for the explained class; see the module doc."""

    unit_clicked = pyqtSignal(int)  # a channel of the shown layer picked
    overlay_changed = pyqtSignal(object)  # Overlay
    integrated_requested = pyqtSignal()  # path-integrated attribution of this frame

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Why this prediction", parent)
        self.info = QLabel("Show this tab to explain the top prediction at the shown layer.")
        self.info.setObjectName("paneInfo")
        self.info.setWordWrap(True)
        hint = QLabel("click a prediction: explain that class · Ctrl-click: weigh it against "
                      "another · hover the input: what the layer sees there")
        hint.setObjectName("paneInfo")
        hint.setWordWrap(True)
        self.layout_.addWidget(self.info)
        self.layout_.addWidget(hint)
        row = QHBoxLayout()
        row.addWidget(QLabel("Input:"))
        self._overlay_buttons = QButtonGroup(self)
        for overlay in Overlay:
            button = QRadioButton(OVERLAY_TEXT[overlay])
            button.setToolTip(f"Draw the {overlay.value} on the input pane")
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.setChecked(overlay == Overlay.SPATIAL)
            button.toggled.connect(lambda on, o=overlay: self._on_overlay_toggled(on, o))
            self._overlay_buttons.addButton(button)
            row.addWidget(button)
        row.addStretch(1)
        self.integrated_button = QPushButton("Integrated")
        self.integrated_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.integrated_button.setToolTip(
            "Integrate the gradient along the path from zero activations to this frame's "
            "(Building Blocks used 100 steps): channel attributions that add up to the score "
            "minus its value at zero. Freezes the frame.")
        self.integrated_button.clicked.connect(self.integrated_requested)
        row.addWidget(self.integrated_button)
        self.layout_.addLayout(row)

        columns = QHBoxLayout()
        left = QVBoxLayout()
        self.channels_title = QLabel("Channels for and against")
        self.channels_title.setObjectName("paneInfo")
        self.channels_title.setWordWrap(True)
        self.channels = BarRows(2 * CHANNEL_ROWS)
        self.channels.unit_clicked.connect(self.unit_clicked)
        left.addWidget(self.channels_title)
        left.addWidget(self.channels, 1)
        right = QVBoxLayout()
        self.groups_title = QLabel("Neuron groups")
        self.groups_title.setObjectName("paneInfo")
        self.groups_title.setWordWrap(True)
        self.groups = BarRows(len(GROUP_COLORS))
        self.dictionary_title = QLabel("At the cursor: hover the input")
        self.dictionary_title.setObjectName("paneInfo")
        self.dictionary_title.setWordWrap(True)
        self.dictionary = BarRows(8)
        self.dictionary.unit_clicked.connect(self.unit_clicked)
        right.addWidget(self.groups_title)
        right.addWidget(self.groups, 3)
        right.addWidget(self.dictionary_title)
        right.addWidget(self.dictionary, 2)
        columns.addLayout(left, 3)
        columns.addLayout(right, 2)
        self.layout_.addLayout(columns, 1)
        # long class names wrap instead of widening the window past a small screen
        for label in (self.info, hint, self.channels_title, self.groups_title,
                      self.dictionary_title):
            label.setMinimumWidth(40)
        self.explanation: BuildingBlocks | None = None
        self.integrated: IntegratedExplanation | None = None  # shown instead, while it fits
        self._icon_layer = ""
        self._cell: tuple[int, int] | None = None

    def _on_overlay_toggled(self, on: bool, overlay: Overlay) -> None:
        if on:
            self.overlay_changed.emit(overlay)

    # -- data -----------------------------------------------------------------------------

    def set_explanation(self, e: BuildingBlocks, target_name: str, versus_name: str) -> None:
        """One frame's building blocks (text and bars; the overlays are the input's)."""
        if e.layer != self._icon_layer:
            self._icon_layer = e.layer
            self.channels.clear_icons()
            self.dictionary.clear_icons()
        self.explanation = e
        against = f" vs {versus_name!r}" if e.versus is not None else ""
        self.info.setText(
            f"Why {target_name!r}{against} · {e.layer} · score {e.score:.2f} · "
            f"p {e.probability:.2f} · {e.ms:.0f} ms/frame")
        path = self.integrated
        if path is not None and (path.layer, path.target, path.versus) != (
                e.layer, e.target, e.versus):
            self.integrated = path = None  # another layer or class: the live values again
        self._set_channels(e.channels if path is None else path.channels)
        how = ("Σ act × grad" if path is None else
               f"path-integrated, {path.steps} steps (adds up to score − baseline within "
               f"{100 * path.gap:.1f} %)")
        self.channels_title.setText(
            f"Channels for {target_name!r} (orange) and against (blue): {how}")
        g = e.group_attribution
        gscale = float(np.abs(g).max()) if g.size else 1.0
        rows: list[tuple[int | None, str, float, tuple[int, int, int]]] = []
        for i in range(len(g)):
            top = np.argsort(-e.group_channels[i], kind="stable")[:3]
            rows.append((int(top[0]), f"group {i + 1}: {', '.join(str(int(u)) for u in top)}",
                         float(g[i]), GROUP_COLORS[i % len(GROUP_COLORS)]))
        self.groups.set_rows(rows, gscale)
        note = f" ({e.groups_note})" if e.groups_note else ""
        self.groups_title.setText(f"Neuron groups: top units, attribution{note}")
        if self._cell is not None:
            self.show_cell(*self._cell)

    def show_unexplained(self, layer: str, one_by_one: bool) -> None:
        """No building blocks for this frame: a 1×1 layer has no positions to explain,
        else they are still being computed."""
        self.info.setText(
            f"{layer} has no positions to explain (a 1×1 layer): pick a layer with a map"
            if one_by_one else "Explaining… (one forward and backward per frame)")

    def _set_channels(self, channels: np.ndarray) -> None:
        order = np.argsort(-channels, kind="stable")
        up = [int(u) for u in order[:CHANNEL_ROWS] if channels[u] > 0]
        down = [int(u) for u in order[::-1][:CHANNEL_ROWS] if channels[u] < 0]
        scale = float(np.abs(channels).max()) if channels.size else 1.0
        self.channels.set_rows(
            [(u, f"unit {u}  {channels[u]:+.2f}", float(channels[u]), FOR_COLOR) for u in up]
            + [(u, f"unit {u}  {channels[u]:+.2f}", float(channels[u]), AGAINST_COLOR)
               for u in down], scale)

    def set_integrated(self, result: IntegratedExplanation | None) -> None:
        """Show a frozen frame's path-integrated attribution in place of the live one
        (None: back to the live values)."""
        self.integrated = result
        self.integrated_button.setEnabled(True)

    def set_integrated_running(self, running: bool) -> None:
        """While the path-integrated job runs its button is off (one at a time)."""
        self.integrated_button.setEnabled(not running)

    def icon_units(self) -> tuple[int, ...]:
        """The channels the pane names now (whose icons it wants)."""
        rows = [*self.channels.units(), *self.groups.units(), *self.dictionary.units()]
        return tuple(dict.fromkeys(u for u in rows if u is not None))

    def set_group_icons(self, layer: str, icons: tuple[np.ndarray, ...]) -> None:
        """Each group's own icon: the preferred image of its direction."""
        if layer == self._icon_layer:
            self.groups.set_row_icons([QPixmap.fromImage(rgb_to_qimage(i)) for i in icons])

    def set_icons(self, layer: str, icons: tuple[tuple[int, np.ndarray], ...]) -> None:
        if layer != self._icon_layer:
            return
        for unit, image in icons:
            pixmap = QPixmap.fromImage(rgb_to_qimage(image))
            for rows in (self.channels, self.groups, self.dictionary):
                rows.set_icon(unit, pixmap)

    def show_cell(self, y: int, x: int) -> None:
        """The semantic dictionary at map cell (y, x) of the explained layer."""
        self._cell = (y, x)
        e = self.explanation
        if e is None:
            return
        h, w = e.spatial.shape
        if not (0 <= y < h and 0 <= x < w):
            return
        units, values = e.dictionary_units[y, x], e.dictionary_values[y, x]
        scale = float(np.abs(values).max()) or 1.0
        self.dictionary.set_rows(
            [(int(u), f"unit {int(u)}  {float(v):.2f}", float(v), (200, 200, 200))
             for u, v in zip(units, values, strict=True)], scale)
        self.dictionary_title.setText(
            f"At ({y}, {x}): its {len(units)} most active channels "
            f"(attribution there {float(e.spatial[y, x]):+.2f})")

    def clear_cell(self) -> None:
        self._cell = None
        self.dictionary.set_rows([], 1.0)
        self.dictionary_title.setText("At the cursor: hover the input")

    def info_text(self) -> str:
        return self.info.text()
