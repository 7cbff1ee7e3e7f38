"""The status bar: the latest notice, job progress, frozen and attribution badges, numbers.

Notices stay a few seconds by level; an error stays until the next notice or a click on it,
since a fading error is an error missed. A notice too long for the bar is elided, never cut
mid-word: the whole text and the last dozen notices, with their times, are its tooltip.
Each running job gets a compact bar with a cancel ×.
"""

from __future__ import annotations

from collections import deque

from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QMouseEvent, QResizeEvent
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QStatusBar, QWidget

from app.core.messages import Notice, NoticeLevel
from app.core.requests import JobEvent
from app.core.results import Result
from app.gui import theme
from app.gui.jobs_view import JobWidget

# how long a notice stays; errors are not here: they stay until replaced or clicked away
NOTICE_SECONDS = {NoticeLevel.INFO: 4.0, NoticeLevel.WARNING: 8.0}
NOTICE_COLORS = {
    NoticeLevel.INFO: theme.TEXT,
    NoticeLevel.WARNING: theme.WARNING,
    NoticeLevel.ERROR: theme.ERROR,
}
HISTORY = 200  # notices kept for `notices()`
TOOLTIP_NOTICES = 12


class NoticeLabel(QLabel):
    """A one-line label that elides its text ("…") to its width; a click emits `clicked`."""

    clicked = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setMinimumWidth(60)  # never widens the window: it takes what the bar leaves
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def set_full_text(self, text: str) -> None:
        self._full = text
        self._elide()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event: QResizeEvent | None) -> None:
        super().resizeEvent(event)
        self._elide()

    def mousePressEvent(self, event: QMouseEvent | None) -> None:
        super().mousePressEvent(event)
        self.clicked.emit()

    def _elide(self) -> None:
        width = max(self.contentsRect().width(), 1)
        self.setText(self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, width))


class StatusBar(QStatusBar):
    """Notice on the left; jobs, FROZEN, attribution cost, rates, model, source on the right."""

    cancel_requested = pyqtSignal(str)  # a job's kind: its × was clicked

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizeGripEnabled(False)
        self._notice = NoticeLabel()
        self._notice.clicked.connect(self._on_notice_expired)
        self._stats = QLabel("waiting for frames")
        self._model = QLabel("loading model")
        self._source = QLabel("")
        self._frozen = QLabel("FROZEN")
        self._frozen.setStyleSheet(
            f"color: {theme.BACKGROUND}; background: {theme.FROZEN}; font-weight: 700;"
            " border-radius: 3px; padding: 0px 6px;"
        )
        self._frozen.hide()
        self._attribution = QLabel("")
        self._attribution.setToolTip("Attribution mode of the selected unit and its cost "
                                     "on the inference worker (b cycles the modes)")
        self._attribution.hide()
        jobs_box = QWidget()
        self._jobs_layout = QHBoxLayout(jobs_box)
        self._jobs_layout.setContentsMargins(0, 0, 0, 0)
        self._jobs_layout.setSpacing(8)
        self._jobs: dict[str, JobWidget] = {}
        self._source_named = False
        self.addWidget(self._notice, 1)
        for label in (
            jobs_box, self._frozen, self._attribution, self._stats, self._model, self._source,
        ):
            self.addPermanentWidget(label)
        self._history: deque[tuple[str, Notice]] = deque(maxlen=HISTORY)
        self._notice_timer = QTimer(self)
        self._notice_timer.setSingleShot(True)
        self._notice_timer.timeout.connect(self._on_notice_expired)

    # ------------------------------------------------------------------ notices

    def show_notice(self, stamp: str, notice: Notice) -> None:
        """Show `notice` (given at time `stamp`): a few seconds by its level; an error
        until the next notice or a click."""
        self._history.append((stamp, notice))
        color = NOTICE_COLORS.get(notice.level, theme.TEXT)
        weight = "600" if notice.level == NoticeLevel.ERROR else "400"
        self._notice.setStyleSheet(f"color: {color}; font-weight: {weight};")
        self._notice.set_full_text(notice.text)
        self._notice.setToolTip(
            "\n".join(f"{t}  {n.level.value}: {n.text}"
                      for t, n in list(self._history)[-TOOLTIP_NOTICES:])
        )
        seconds = NOTICE_SECONDS.get(notice.level)
        if seconds is None or notice.level == NoticeLevel.ERROR:
            self._notice_timer.stop()
        else:
            self._notice_timer.start(int(seconds * 1000))

    def notice_text(self) -> str:
        """The notice on screen, whole ("" once it expired or was clicked away)."""
        return self._notice.full_text()

    def notice_shown_text(self) -> str:
        """The notice as drawn: elided to the room the bar leaves it."""
        return self._notice.text()

    def notice_tooltip(self) -> str:
        return self._notice.toolTip()

    def notice_label(self) -> QWidget:
        """The notice's label (a click on it dismisses the notice)."""
        return self._notice

    def notice_style(self) -> str:
        """The style sheet the notice on screen is drawn with (its level's colour, weight)."""
        return self._notice.styleSheet()

    def notices(self) -> list[Notice]:
        """Every notice shown (the last HISTORY), oldest first."""
        return [notice for _, notice in self._history]

    def stop(self) -> None:
        """Stop the notice timer (the window is closing)."""
        self._notice_timer.stop()

    def _on_notice_expired(self) -> None:
        self._notice_timer.stop()
        self._notice.set_full_text("")

    # ------------------------------------------------------------------ numbers and badges

    def show_stats(self, result: Result) -> None:
        """Rates, model and device of `result`; its frame's source until a source is named."""
        # a still image is re-rendered only on request: a rate would read as "0 fps, broken";
        # frozen, the last rate measured before freezing would pass for the current one
        if result.frozen:
            rate = "frozen"
        else:
            rate = f"{result.fps:5.1f} fps" if result.fps > 0 else "still"
        self._stats.setText(
            f"{rate}   latency {result.latency_ms:4.0f} ms   "
            f"compute {result.compute_ms:4.0f} ms   dropped {result.dropped_frames}"
        )
        self._model.setText(f"{result.model} · {result.device}")
        if not self._source_named:
            self._source.setText(result.frame.source)
        self._frozen.setVisible(result.frozen)

    def set_model_text(self, text: str) -> None:
        self._model.setText(text)

    def set_source(self, kind: str, label: str) -> None:
        """"folder: photos  2/9": the source that opened; frames no longer name it."""
        self._source.setText(f"{kind}: {label}")
        self._source_named = bool(label)

    def set_attribution_text(self, text: str | None) -> None:
        """The attribution badge; None hides it."""
        if text is None:
            self._attribution.hide()
        else:
            self._attribution.setText(text)
            self._attribution.show()

    def attribution_text(self) -> str | None:
        """The attribution badge's text; None while it is hidden."""
        return self._attribution.text() if self._attribution.isVisible() else None

    def frozen_text(self) -> str | None:
        """The FROZEN badge's text; None while it is hidden."""
        return self._frozen.text() if self._frozen.isVisible() else None

    def stats_text(self) -> str:
        return self._stats.text()

    def model_text(self) -> str:
        return self._model.text()

    def source_text(self) -> str:
        return self._source.text()

    # ------------------------------------------------------------------ jobs

    def show_job(self, progress: JobEvent) -> None:
        """A job's progress: its bar appears on the first report and follows it."""
        widget = self._jobs.get(progress.kind)
        if widget is None:
            widget = JobWidget(progress.kind, progress.request.label)
            widget.cancel_requested.connect(self.cancel_requested)
            self._jobs_layout.addWidget(widget)
            self._jobs[progress.kind] = widget
        widget.set_progress(progress)

    def end_job(self, kind: str) -> None:
        widget = self._jobs.pop(kind, None)
        if widget is not None:
            self._jobs_layout.removeWidget(widget)
            widget.deleteLater()

    def job_widget(self, kind: str) -> JobWidget | None:
        """The bar of a running job, None when it has none."""
        return self._jobs.get(kind)
