"""Top-5 predictions as horizontal bars, painted in one pass (no per-row widgets to relayout).

With units deleted, two columns: the intact network's top-5 and the ablated one's. A click
on a bar picks that class (the window selects its class unit); a Ctrl/Shift-click picks
it as the class to compare against ("A vs B"). The picked classes are outlined.
"""

from __future__ import annotations

from PyQt6.QtCore import QRectF, QSize, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QFontMetrics, QMouseEvent, QPainter, QPaintEvent, QPen
from PyQt6.QtWidgets import QSizePolicy, QWidget

from app.core.messages import Prediction
from app.gui import theme
from app.gui.image_pane import Panel

_ROW_H = 26
PERCENT_W = 50.0  # px for "38.3%"
TWO_PERCENT_W = 38.0  # the same in the smaller font of the two columns
COLUMN_GAP = 10.0  # px between the intact and the ablated column
LABEL_PADDING = 14  # px of a bar not for its label: 8 before it, 6 after
_ROWS = 5
_HEADER_H = 16  # two-column mode: a caption row; the bars shrink so the height stays put
_TWO_ROW_H = (_ROW_H * _ROWS - _HEADER_H) // _ROWS
INTACT_TITLE = "intact"
ABLATED_TITLE = "ablated"


def _rows(predictions: tuple[Prediction, ...]) -> list[tuple[str, str]]:
    return [(p.label, f"{100.0 * p.probability:.1f}%") for p in predictions]


class PredictionsView(QWidget):
    """One bar per prediction: label on the left, bar proportional to probability, percent."""

    class_clicked = pyqtSignal(int, bool)  # class index, modifier held (the "vs" class)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._marked: dict[int, str] = {}  # class index → outline colour
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self._predictions: tuple[Prediction, ...] = ()
        self._intact: tuple[Prediction, ...] | None = None
        self._placeholder = "Waiting for frames…"
        self.setMinimumHeight(_ROW_H * _ROWS + 4)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(300, _ROW_H * _ROWS + 4)

    def set_predictions(
        self,
        predictions: tuple[Prediction, ...],
        intact: tuple[Prediction, ...] | None = None,
    ) -> None:
        """`intact` given (units deleted): `predictions` are the ablated net's, shown beside."""
        if predictions != self._predictions or intact != self._intact:
            self._predictions = predictions
            self._intact = intact
            self.update()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def set_marked(self, picked: int | None, versus: int | None) -> None:
        """Outline the picked class (accent) and the one it is compared with (red)."""
        marked = {i: c for i, c in ((versus, theme.ERROR), (picked, theme.ACCENT))
                  if i is not None}
        if marked != self._marked:
            self._marked = marked
            self.update()

    def marked(self) -> dict[int, str]:
        return dict(self._marked)

    def row_at(self, x: float, y: float) -> Prediction | None:
        """The prediction whose bar is at (x, y), in either column."""
        if self._intact is None:
            preds, top0, row_h = self._predictions, 2.0, _ROW_H
        else:
            half = self._column_width(True)
            preds = self._intact if x < half + COLUMN_GAP / 2 else self._predictions
            top0, row_h = float(_HEADER_H), _TWO_ROW_H
        row = int((y - top0) // row_h)
        return preds[row] if 0 <= row < len(preds) and y >= top0 else None

    def bar_center(self, row: int, column: str = "") -> tuple[int, int]:
        """Where the middle of a row's bar is (tests click there); column "ablated" or ""."""
        if self._intact is None:
            return self.width() // 3, int(2 + row * _ROW_H + _ROW_H / 2)
        half = self._column_width(True)
        x = half + COLUMN_GAP + half / 3 if column == ABLATED_TITLE else half / 3
        return int(x), int(_HEADER_H + row * _TWO_ROW_H + _TWO_ROW_H / 2)

    def mouseReleaseEvent(self, event: QMouseEvent | None) -> None:
        if event is None or event.button() != Qt.MouseButton.LeftButton:
            return
        hit = self.row_at(event.position().x(), event.position().y())
        if hit is not None:
            mods = event.modifiers()
            versus = bool(mods & (Qt.KeyboardModifier.ControlModifier
                                  | Qt.KeyboardModifier.ShiftModifier))
            self.class_clicked.emit(hit.index, versus)

    @property
    def two_columns(self) -> bool:
        return self._intact is not None

    def rows(self) -> list[tuple[str, str]]:
        """(label, percent text) per shown row of the main (ablated, when two) column."""
        return _rows(self._predictions)

    def columns(self) -> dict[str, list[tuple[str, str]]]:
        """Column title → its rows, as painted: one column "", or "intact" and "ablated"."""
        if self._intact is None:
            return {"": _rows(self._predictions)}
        return {INTACT_TITLE: _rows(self._intact), ABLATED_TITLE: _rows(self._predictions)}

    def paintEvent(self, event: QPaintEvent | None) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF(), 9.5))
        painter.setFont(font)
        w = self.width()
        if not self._predictions:
            painter.setPen(QColor(theme.TEXT_DIM))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._placeholder)
            return
        if self._intact is None:
            self._paint_column(painter, self._predictions, 0.0, w, 2.0, _ROW_H, None,
                               self._marked, PERCENT_W)
            return
        half = self._column_width(True)
        gap = w - 2 * half
        intact_top = {p.index for p in self._intact[:1]}
        small = QFont(font)
        small.setPointSizeF(font.pointSizeF() - 1.0)
        for x, title, preds in (
            (0.0, INTACT_TITLE, self._intact),
            (half + gap, ABLATED_TITLE, self._predictions),
        ):
            painter.setFont(small)
            painter.setPen(QColor(theme.ERROR if title == ABLATED_TITLE else theme.TEXT_DIM))
            painter.drawText(
                QRectF(x + 2, 0, half, _HEADER_H), Qt.AlignmentFlag.AlignVCenter, title
            )
            painter.setFont(font)
            # the ablated column's top-1 turns red when deleting units changed the answer
            changed = title == ABLATED_TITLE and {p.index for p in preds[:1]} != intact_top
            # half a pane each: the percent gets a narrower column and the smaller font, so a
            # name like "window screen" still fits on its bar at 1366×768
            self._paint_column(
                painter, preds, x, half, float(_HEADER_H), _TWO_ROW_H,
                theme.ERROR if changed else None, self._marked, TWO_PERCENT_W, small,
            )

    def _column_width(self, two_columns: bool) -> float:
        return (self.width() - COLUMN_GAP) / 2 if two_columns else float(self.width())

    def label_room(self, two_columns: bool) -> float:
        """Pixels a class name has on its bar (the bar less its padding and the percent)."""
        pct_w = TWO_PERCENT_W if two_columns else PERCENT_W
        return self._column_width(two_columns) - pct_w - 4 - LABEL_PADDING

    def label_width(self, text: str) -> int:
        """Pixels `text` takes in the bars' font."""
        font = QFont(self.font())
        font.setPointSizeF(max(font.pointSizeF(), 9.5))
        return QFontMetrics(font).horizontalAdvance(text)

    @staticmethod
    def _paint_column(
        painter: QPainter,
        predictions: tuple[Prediction, ...],
        left: float,
        width: float,
        top0: float,
        row_h: int,
        top_color: str | None,
        marked: dict[int, str],
        pct_w: float,
        pct_font: QFont | None = None,
    ) -> None:
        bar_w = width - pct_w - 4
        for i, (label, pct) in enumerate(_rows(predictions)):
            top = top0 + i * row_h
            track = QRectF(left, top + 2, bar_w, row_h - 4)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(theme.PANEL_LIGHT))
            painter.drawRoundedRect(track, 4, 4)
            prob = min(max(predictions[i].probability, 0.0), 1.0)
            fill = QRectF(track.left(), track.top(), max(track.width() * prob, 3.0), track.height())
            color = QColor((top_color or theme.ACCENT) if i == 0 else "#4f7cac")
            painter.setBrush(color)
            painter.drawRoundedRect(fill, 4, 4)
            outline = marked.get(predictions[i].index)
            if outline is not None:
                pen = QPen(QColor(outline))
                pen.setWidthF(2.0)
                painter.setPen(pen)
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(track.adjusted(1, 1, -1, -1), 4, 4)
            # the label sits on the bar; elide so a long class name never runs into the percent
            painter.setPen(QColor("#ffffff"))
            text_rect = track.adjusted(8, 0, 8 - LABEL_PADDING, 0)
            elided = painter.fontMetrics().elidedText(
                label, Qt.TextElideMode.ElideRight, int(text_rect.width())
            )
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter, elided)
            painter.setPen(QColor(theme.TEXT))
            label_font = painter.font()
            if pct_font is not None:
                painter.setFont(pct_font)
            painter.drawText(
                QRectF(left + bar_w + 4, top, pct_w, row_h),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                pct,
            )
            painter.setFont(label_font)


class PredictionsPane(Panel):
    """"Top-5 predictions": the bars under a title; as tall as the bars, never taller."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Top-5 predictions", parent)
        self._view = PredictionsView()
        self.class_clicked = self._view.class_clicked
        self._view.setToolTip("Click a class: select its class unit (layer logits); "
                              "Ctrl-click: the class to compare it with")
        self.layout_.addWidget(self._view)
        self.setSizePolicy(
            self.sizePolicy().horizontalPolicy(), self._view.sizePolicy().verticalPolicy()
        )

    def set_predictions(
        self,
        predictions: tuple[Prediction, ...],
        intact: tuple[Prediction, ...] | None = None,
    ) -> None:
        """`intact` given (units deleted): `predictions` are the ablated net's, shown beside."""
        self._view.set_predictions(predictions, intact)

    @property
    def two_columns(self) -> bool:
        return self._view.two_columns

    def rows(self) -> list[tuple[str, str]]:
        """(label, percent text) per shown row of the main (ablated, when two) column."""
        return self._view.rows()

    def columns(self) -> dict[str, list[tuple[str, str]]]:
        """Column title → its rows, as painted: one column "", or "intact" and "ablated"."""
        return self._view.columns()

    def set_marked(self, picked: int | None, versus: int | None) -> None:
        self._view.set_marked(picked, versus)

    def marked(self) -> dict[int, str]:
        return self._view.marked()

    def bars(self) -> QWidget:
        """The widget the bars are painted on (clicks go there)."""
        return self._view

    def bar_center(self, row: int, column: str = "") -> tuple[int, int]:
        return self._view.bar_center(row, column)
