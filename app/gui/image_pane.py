"""A titled panel holding one pyqtgraph view, with a text placeholder until data arrives."""

from __future__ import annotations

import pyqtgraph as pg
from PyQt6.QtCore import QPoint, QPointF, QSize, Qt
from PyQt6.QtGui import QResizeEvent
from PyQt6.QtWidgets import QFrame, QLabel, QStackedWidget, QVBoxLayout, QWidget

from app.gui import theme


def make_image_item() -> pg.ImageItem:
    """An ImageItem that reads arrays as (rows, cols), like numpy and the tiling code."""
    return pg.ImageItem(axisOrder="row-major")


class ElidedLabel(QLabel):
    """One line that ends in "…" when the pane is too narrow for it, instead of widening
    the window or being cut mid-letter (a pane's title, a caption); `text()` stays the whole
    text. QLabel draws the shortened text itself, so its background is repainted as usual
    (a paintEvent of our own left the old title's letters behind the new one)."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setText(text)

    def minimumSizeHint(self) -> QSize:
        return QSize(40, super().minimumSizeHint().height())

    def setText(self, text: str | None) -> None:
        self._full = text or ""
        self._elide()

    def text(self) -> str:
        return self._full

    def resizeEvent(self, event: QResizeEvent | None) -> None:
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(self.contentsRect().width(), 1)
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, width)
        super().setText(shown)

    def is_elided(self) -> bool:
        """Whether the text is wider than the label (then it ends in "…")."""
        return super().text() != self._full


class Panel(QFrame):
    """A rounded dark frame with a title row; subclasses add their content below it."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("panel")
        self._title = ElidedLabel(title)
        self._title.setObjectName("paneTitle")
        self._title.setTextInteractionFlags(Qt.TextInteractionFlag.NoTextInteraction)
        self.layout_ = QVBoxLayout(self)
        self.layout_.setContentsMargins(6, 4, 6, 6)
        self.layout_.setSpacing(4)
        self.layout_.addWidget(self._title)

    def set_title(self, text: str, tooltip: str = "") -> None:
        """The title row; too long for the pane, it ends in "…" and the tooltip has it all."""
        self._title.setText(text)
        self._title.setToolTip(tooltip or text)

    def title_text(self) -> str:
        return self._title.text()

    def title_elided(self) -> bool:
        """Whether the title is too long for the pane (drawn ending in "…")."""
        return self._title.is_elided()

    def title_height(self) -> int:
        """Height the title row asks for (layout code sizes the pane's content with it)."""
        return self._title.sizeHint().height()


class ImageView(QStackedWidget):
    """A locked-aspect, non-interactive ViewBox behind a placeholder label.

    Not pyqtgraph's ImageView: that one rescans levels and re-ranges on every frame.
    """

    def __init__(self, placeholder: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.placeholder = QLabel(placeholder)
        self.placeholder.setObjectName("placeholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.graphics = pg.GraphicsView(background=theme.BACKGROUND)
        # keys belong to the window's shortcuts, never to a graphics view
        self.graphics.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        # QGraphicsView accepts drops by default; files dropped on a pane go to the window
        self.graphics.setAcceptDrops(False)
        self.view = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view.setMouseEnabled(False, False)
        self.view.setDefaultPadding(0.01)
        self.graphics.setCentralItem(self.view)
        self.addWidget(self.placeholder)
        self.addWidget(self.graphics)

    def set_placeholder(self, text: str) -> None:
        self.placeholder.setText(text)

    def show_graphics(self, visible: bool = True) -> None:
        self.setCurrentIndex(1 if visible else 0)

    @property
    def showing_graphics(self) -> bool:
        return self.currentIndex() == 1

    def placeholder_text(self) -> str:
        return self.placeholder.text()

    def mouse_area(self) -> QWidget:
        """The widget that receives the view's mouse events (its viewport)."""
        viewport = self.graphics.viewport()
        assert viewport is not None  # a QGraphicsView always has one
        return viewport

    def viewport_pos(self, scene_pos: QPointF) -> QPoint:
        """Where a scene position is drawn in `mouse_area()` coordinates."""
        return self.graphics.mapFromScene(scene_pos)
