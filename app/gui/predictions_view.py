"""Top-5 predictions as horizontal bars, painted in one pass (no per-row widgets to relayout)."""

from __future__ import annotations

from PyQt6.QtCore import QRectF, QSize, Qt
from PyQt6.QtGui import QColor, QFont, QPainter, QPaintEvent
from PyQt6.QtWidgets import QSizePolicy, QWidget

from app.core.messages import Prediction
from app.gui import theme

_ROW_H = 26
_ROWS = 5


class PredictionsView(QWidget):
    """One bar per prediction: label on the left, bar proportional to probability, percent."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._predictions: tuple[Prediction, ...] = ()
        self._placeholder = "Waiting for frames…"
        self.setMinimumHeight(_ROW_H * _ROWS + 4)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(300, _ROW_H * _ROWS + 4)

    def set_predictions(self, predictions: tuple[Prediction, ...]) -> None:
        if predictions != self._predictions:
            self._predictions = predictions
            self.update()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def rows(self) -> list[tuple[str, str]]:
        """(label, percent text) per shown row, as painted."""
        return [(p.label, f"{100.0 * p.probability:.1f}%") for p in self._predictions]

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
        pct_w = 56
        bar_w = w - pct_w - 4
        for i, (label, pct) in enumerate(self.rows()):
            top = 2 + i * _ROW_H
            track = QRectF(0, top + 2, bar_w, _ROW_H - 4)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(theme.PANEL_LIGHT))
            painter.drawRoundedRect(track, 4, 4)
            prob = min(max(self._predictions[i].probability, 0.0), 1.0)
            fill = QRectF(track.left(), track.top(), max(track.width() * prob, 3.0), track.height())
            color = QColor(theme.ACCENT if i == 0 else "#4f7cac")
            painter.setBrush(color)
            painter.drawRoundedRect(fill, 4, 4)
            # the label sits on the bar; elide so a long class name never runs into the percent
            painter.setPen(QColor("#ffffff"))
            text_rect = track.adjusted(8, 0, -6, 0)
            elided = painter.fontMetrics().elidedText(
                label, Qt.TextElideMode.ElideRight, int(text_rect.width())
            )
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter, elided)
            painter.setPen(QColor(theme.TEXT))
            painter.drawText(
                QRectF(bar_w + 4, top, pct_w, _ROW_H),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                pct,
            )
