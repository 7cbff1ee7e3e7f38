"""Python's cycle collector, run on the GUI thread only while the window is up.

The collector runs in whichever thread happens to allocate past its threshold: the capture
thread, the inference worker or a job. A cycle that holds Qt objects (a closed dialog, the
panes a model change rebuilt, a slot's lambda) would then be destroyed off the GUI thread,
while the GUI thread uses Qt: a crash far from its cause. So the window turns automatic
collection off and collects on a timer of the GUI thread instead, on the schedule
Python would have used (the scheme pyqtgraph's `GarbageCollector` describes).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from PyQt6.QtCore import QCoreApplication, QEvent, QTimer

CHECK_INTERVAL_MS = 500


class DueCollections:
    """Python's own schedule of collections, run when asked (by the GUI thread's timer).

    Generation 0 when more than `thresholds[0]` objects were allocated since its last
    collection, 1 every `thresholds[1]` collections of 0, and a full collection every
    `thresholds[2]` of 1 only if the objects that survived into the oldest generation
    since the last full one are a quarter of those it held then: CPython's own rule,
    which keeps full collections (~0.2 s with torch loaded, a hitch on the GUI thread)
    rare in a process whose old objects are mostly its modules.
    """

    def __init__(self, thresholds: tuple[int, int, int]) -> None:
        self.thresholds = thresholds
        self.long_lived_total = len(gc.get_objects(generation=2))
        self.long_lived_pending = 0

    def __call__(self) -> int:
        """Collect what is due now; the number of unreachable objects found."""
        young, middle, old = gc.get_count()
        if young <= self.thresholds[0]:
            return 0
        if middle <= self.thresholds[1]:
            return gc.collect(0)
        if old > self.thresholds[2] and self.long_lived_pending > self.long_lived_total // 4:
            found = gc.collect(2)
            self.long_lived_total = len(gc.get_objects(generation=2))
            self.long_lived_pending = 0
            return found
        younger = len(gc.get_objects(generation=0)) + len(gc.get_objects(generation=1))
        found = gc.collect(1)
        self.long_lived_pending += max(younger - found, 0)  # the survivors move up to 2
        return found


def free_closed_widgets(app: QCoreApplication, rounds: int = 8) -> None:
    """Delete now what `deleteLater` left, and collect the Python side, on this thread.

    A deleted window's Python side lives on until PyQt's slot proxies drop its lambdas and
    the collector breaks its cycles, and the proxies go in events posted after the deferred
    deletes (a window was measured alive after two flushes of those alone). Until it is
    gone its wrappers of Qt-created objects stay registered, and a new object at a freed
    address is handed one of them: a window built in that gap crashed inside pyqtgraph.
    So each round flushes every posted event a few times, then collects; the rounds stop
    when a collection finds nothing (a full collection of a loaded app is ~0.2 s).
    """
    for _ in range(rounds):
        for _ in range(3):  # a deletion can post the next one (the proxies)
            app.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
            app.processEvents()
            app.sendPostedEvents(None, 0)
        if gc.collect() == 0:
            return


@contextmanager
def collect_garbage_on_gui_thread(interval_ms: int = CHECK_INTERVAL_MS) -> Iterator[QTimer]:
    """Inside, cycles are collected only by a timer of the calling (GUI) thread.

    Automatic collection is given back as it was on the way out, after one full collection
    here, so nothing the window left is collected later by another thread.
    """
    was_enabled = gc.isenabled()
    thresholds = gc.get_threshold()
    timer = QTimer()
    timer.timeout.connect(DueCollections(thresholds))
    gc.disable()
    timer.start(interval_ms)
    try:
        yield timer
    finally:
        timer.stop()
        gc.collect()
        if was_enabled:
            gc.enable()
