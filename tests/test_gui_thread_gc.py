"""The window's collector: cycles are broken on the GUI thread, never by a backend's thread."""

from __future__ import annotations

import gc
import threading
import time

import pytest

pytest.importorskip("pytestqt")

from PyQt6.QtWidgets import QApplication

from app.gui.gui_thread_gc import collect_due_generations, collect_garbage_on_gui_thread


class _Cycle:
    """An object in a reference cycle that records which thread destroyed it."""

    def __init__(self, destroyed_on: list[str]) -> None:
        self.me = self
        self.destroyed_on = destroyed_on

    def __del__(self) -> None:
        self.destroyed_on.append(threading.current_thread().name)


def _churn_in_a_thread() -> None:
    """Allocate container objects past every threshold, in a thread of its own."""

    def churn() -> None:
        keep = []
        for i in range(200_000):
            keep.append([i])  # a tracked container: counts towards gen 0
            if len(keep) > 1000:
                keep.clear()

    thread = threading.Thread(target=churn, name="churn")
    thread.start()
    thread.join()


def _drop_a_cycle(destroyed_on: list[str]) -> None:
    _Cycle(destroyed_on)


def test_without_it_a_backend_thread_collects_the_windows_cycles(qapp) -> None:
    """The hazard itself (so the next test can fail): automatic collection in any thread."""
    assert gc.isenabled()
    destroyed_on: list[str] = []
    _drop_a_cycle(destroyed_on)
    _churn_in_a_thread()
    assert destroyed_on == ["churn"]


def test_inside_cycles_are_collected_by_the_gui_threads_timer_only(qapp) -> None:
    destroyed_on: list[str] = []
    with collect_garbage_on_gui_thread(interval_ms=10):
        assert not gc.isenabled()
        _drop_a_cycle(destroyed_on)
        _churn_in_a_thread()
        assert destroyed_on == []  # the thread allocated past every threshold: not collected
        deadline = time.monotonic() + 5.0
        while not destroyed_on and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)
    assert destroyed_on == [threading.main_thread().name]
    assert gc.isenabled()  # given back


def test_on_the_way_out_everything_left_is_collected_and_a_disabled_collector_stays_off(
        qapp) -> None:
    destroyed_on: list[str] = []
    gc.disable()
    try:
        with collect_garbage_on_gui_thread(interval_ms=60_000):
            _drop_a_cycle(destroyed_on)
        assert destroyed_on == [threading.main_thread().name]
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_only_due_generations_are_collected() -> None:
    gc.collect()
    young = gc.get_count()[0]
    assert collect_due_generations((young + 10_000, 10, 10)) == 0
    destroyed_on: list[str] = []
    gc.disable()
    try:
        _drop_a_cycle(destroyed_on)
        assert collect_due_generations((0, 10**9, 10**9)) >= 1  # gen 0 only: the new cycle
    finally:
        gc.enable()
    assert destroyed_on == [threading.main_thread().name]
