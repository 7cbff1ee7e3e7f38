"""The capture thread: owns one Source, puts the newest frame into a LatestSlot.

Only this thread touches the source; other threads ask for things (step, mirror, pause,
stop) through thread-safe methods that set flags and wake it. It never busy-waits: every
pause is an `Event.wait(timeout)` that `stop()` interrupts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from app.capture.images import downscale_to
from app.capture.sources import Source, SourceError
from app.core.messages import Frame
from app.core.settings import SourceSettings
from app.core.slot import LatestSlot

log = logging.getLogger(__name__)

NoticeCallback = Callable[[str, str], None]  # (text, level: "info" | "warning" | "error")
FailedCallback = Callable[[str], None]  # (the one-line reason)

# How long an idle still source sleeps between checks; `stop()`/`step()` wake it sooner.
_IDLE_S = 0.5
# A live source with nothing new (a dropped grab) is asked again after this long.
_RETRY_READ_S = 0.005


class CaptureThread(threading.Thread):
    """Reads `source` until stopped, putting `Frame`s into `slot` (the newest wins)."""

    def __init__(
        self,
        source: Source,
        slot: LatestSlot[Frame],
        settings: SourceSettings | None = None,
        on_notice: NoticeCallback | None = None,
        on_failed: FailedCallback | None = None,
    ) -> None:
        super().__init__(name=f"capture {source.label}", daemon=True)
        settings = settings or SourceSettings()
        self.source = source
        self.slot = slot
        self.max_frame_side = settings.max_frame_side
        self.reconnect_interval_s = settings.reconnect_interval_s
        self._on_notice = on_notice
        self._on_failed = on_failed
        self._mirror = settings.mirror
        self._paused = False
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._pending_step = 0
        self._resend = False
        self._seq = 0
        self._reported_error: str | None = None
        self.frames_read = 0
        self.reconnects = 0

    # -- requests from other threads ---------------------------------------------------

    def step(self, delta: int) -> None:
        """Show the item `delta` away (folders: next/previous, wrapping)."""
        with self._lock:
            self._pending_step += delta
        self._wake.set()

    def resend(self) -> None:
        """Put the current still frame again (after a model change, say)."""
        with self._lock:
            self._resend = True
        self._wake.set()

    def set_mirror(self, mirror: bool) -> None:
        """Mirror camera frames left-right (other sources are never mirrored)."""
        self._mirror = mirror

    @property
    def mirror(self) -> bool:
        return self._mirror

    def set_paused(self, paused: bool) -> None:
        """Stop reading (a video holds its place) until unpaused."""
        self._paused = paused
        self._wake.set()

    @property
    def paused(self) -> bool:
        return self._paused

    def stop(self, timeout: float | None = 2.0) -> bool:
        """Ask the thread to end and wait up to `timeout` s; True when it has ended."""
        self._stop_event.set()
        self._wake.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
        return not self.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    @property
    def count(self) -> int:
        return self.source.count

    @property
    def position(self) -> int:
        return self.source.position

    # -- the thread ----------------------------------------------------------------------

    def run(self) -> None:
        # Decoding and resizing one frame is too small to split: OpenCV's own pool would
        # add a team of threads that competes with torch's for the same cores.
        cv2.setNumThreads(1)
        try:
            if not self.source.is_open:
                try:
                    self.source.open()
                except SourceError as exc:
                    self._fail(str(exc))
                    return
            self._report_source_error()
            self._loop()
        except Exception as exc:  # a bug must not kill the app silently
            log.exception("capture thread failed")
            self._fail(f"{self.source.label}: capture stopped: {exc}")
        finally:
            # Always give the camera back, or the next open (or another app) cannot use it.
            self.source.close()

    def _loop(self) -> None:
        while not self._stop_event.is_set():
            # Clear before looking at requests so a request made after this is not missed.
            self._wake.clear()
            self._apply_requests()
            if self._paused:
                self._wake.wait(_IDLE_S)
                continue
            wait = self.source.next_frame_due - time.perf_counter()
            if wait > 0:
                self._wake.wait(wait)
                continue
            try:
                image = self.source.read()
            except SourceError as exc:
                if not self._reconnect(str(exc)):
                    return
                continue
            if image is None:
                self._wake.wait(_RETRY_READ_S if self.source.is_live else _IDLE_S)
                continue
            self.frames_read += 1
            self._publish(image)

    def _apply_requests(self) -> None:
        with self._lock:
            delta, self._pending_step = self._pending_step, 0
            resend, self._resend = self._resend, False
        if delta or resend:
            self.source.step(delta)
            self._report_source_error()

    def _publish(self, image: np.ndarray) -> None:
        image = downscale_to(image, self.max_frame_side)
        if self._mirror and self.source.kind == "camera":
            image = cv2.flip(image, 1)
        index = self.source.position if self.source.kind == "folder" else self._seq
        self._seq += 1
        self.slot.put(Frame(image, index, time.perf_counter(), self.source.label))

    def _reconnect(self, reason: str) -> bool:
        """Report the loss once, then reopen every `reconnect_interval_s` until stopped.

        Only a camera is worth waiting for (it is plugged back in); a file that cannot be
        reopened at once will not heal, and waiting on it would leave the window on
        "Waiting for frames…" for ever. False: the source has failed for good.
        """
        label = self.source.label
        log.warning("%s", reason)
        self.source.close()
        if self.source.kind != "camera":
            try:
                self.source.open()
            except SourceError as exc:
                self._fail(str(exc))  # what is wrong now, not how it was noticed
                return False
            self.reconnects += 1
            return True
        self._notice(f"{label} lost — retrying", "warning")
        while not self._stop_event.wait(self.reconnect_interval_s):
            try:
                self.source.open()
            except SourceError as exc:
                log.debug("reopening %s failed: %s", label, exc)
                continue
            self.reconnects += 1
            self._notice(f"{label} reconnected", "info")
            return True
        return True

    def _report_source_error(self) -> None:
        error = self.source.last_error
        if error and error != self._reported_error:
            self._notice(error, "warning")
        self._reported_error = error

    def _fail(self, reason: str) -> None:
        """No frame will come from this source: say so (an error notice without a
        listener for failures)."""
        if self._on_failed is None:
            self._notice(reason, "error")
            return
        try:
            self._on_failed(reason)
        except Exception:  # the listener's bug must not hide the failure from the log
            log.exception("failure callback failed: %s", reason)

    def _notice(self, text: str, level: str) -> None:
        if self._on_notice is None:
            log.log(logging.ERROR if level == "error" else logging.INFO, "%s", text)
            return
        try:
            self._on_notice(text, level)
        except Exception:  # the listener's bug is not a reason to stop capturing
            log.exception("notice callback failed")
