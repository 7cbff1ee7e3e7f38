"""The keys card drawn over the window; its rows come from the action table (`actions.py`)."""

from __future__ import annotations

import html

from PyQt6.QtCore import QEvent, QObject, Qt
from PyQt6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent
from PyQt6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from app.gui import theme

CARD_MARGIN = 8  # px the card keeps from the window's top and bottom edges


class HelpOverlay(QWidget):
    """A dimmed layer over `parent` with a card listing (keys, what they do); click closes."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, False)
        self.card = QFrame(self)
        self.card.setObjectName("helpCard")
        self.card.setStyleSheet(
            f"QFrame#helpCard {{ background: {theme.PANEL}; border: 1px solid {theme.BORDER};"
            " border-radius: 10px; }"
        )
        layout = QVBoxLayout(self.card)
        layout.setContentsMargins(24, 18, 24, 18)
        self.text = QLabel()
        self.text.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.text)
        self._rows: list[tuple[str, str]] = []
        self._title = ""
        self._columns = 0  # how the text is laid out now (0: not yet)
        parent.installEventFilter(self)  # follow the parent's size
        self.hide()

    def set_rows(self, title: str, rows: list[tuple[str, str]]) -> None:
        self._title = title
        self._rows = list(rows)
        self._columns = 0  # laid out anew for the parent's height
        self._update_geometry()

    def _render(self, columns: int) -> None:
        """The card as `columns` side-by-side tables of rows, the title above, the footer
        below; the rows fill the first column first (the table's order reads down)."""
        per = -(-len(self._rows) // columns) if self._rows else 0
        tables = []
        for c in range(columns):
            cells = "".join(
                f"<tr><td style='padding:3px 14px 3px 0; color:{theme.ACCENT};'>"
                f"<b>{html.escape(keys)}</b></td><td style='padding:3px 0;'>"
                f"{html.escape(what)}</td></tr>"
                for keys, what in self._rows[c * per:(c + 1) * per]
            )
            pad = "0" if c == columns - 1 else "0 28px 0 0"
            tables.append(f"<td valign='top' style='padding:{pad};'><table>{cells}</table></td>")
        self.text.setText(
            f"<div style='font-size:16px; font-weight:600; margin-bottom:8px;'>"
            f"{html.escape(self._title)}</div><table><tr>{''.join(tables)}</tr></table>"
            f"<div style='color:{theme.TEXT_DIM}; margin-top:10px;'>"
            "h or Esc closes this card</div>"
        )
        self._columns = columns
        # two columns side by side must fit the window's width: long descriptions wrap
        parent = self.parentWidget()
        self.text.setWordWrap(columns > 1)
        if columns > 1 and parent is not None:
            self.text.setFixedWidth(max(parent.width() - 4 * CARD_MARGIN - 48, 200))
        else:
            self.text.setMinimumWidth(0)
            self.text.setMaximumWidth(16_777_215)
        self.card.adjustSize()

    def rows_text(self) -> str:
        """The card's rich text, as drawn."""
        return self.text.text()

    def rows(self) -> list[tuple[str, str]]:
        """(keys, what they do), in the order shown."""
        return list(self._rows)

    def toggle(self) -> None:
        self.setVisible(not self.isVisible())

    def setVisible(self, visible: bool) -> None:
        if visible:
            self._update_geometry()
            self.raise_()
        super().setVisible(visible)

    def _update_geometry(self) -> None:
        parent = self.parentWidget()
        if parent is None:
            return
        self.setGeometry(parent.rect())
        # one column while the card fits the window's height, else two (a 1366×768 screen
        # cut the last rows and the footer off)
        if self._columns != 1:
            self._render(1)
        if self.card.height() > parent.height() - 2 * CARD_MARGIN:
            self._render(2)
        self.card.move(
            max(0, (self.width() - self.card.width()) // 2),
            max(0, (self.height() - self.card.height()) // 2),
        )

    def eventFilter(self, watched: QObject | None, event: QEvent | None) -> bool:
        is_resize = event is not None and event.type() == QEvent.Type.Resize
        if watched is self.parentWidget() and is_resize:
            self._update_geometry()
        return False

    def paintEvent(self, event: QPaintEvent | None) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(0, 0, 0, 150))

    def mousePressEvent(self, event: QMouseEvent | None) -> None:
        self.hide()
