"""The window's collector: cycles are broken on the GUI thread, never by a backend's thread."""

from __future__ import annotations

import gc
import threading
import time

import pytest

pytest.importorskip("pytestqt")

from PyQt6.QtWidgets import QApplication

from app.gui.gui_thread_gc import DueCollections, collect_garbage_on_gui_thread


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


@pytest.fixture
def manual_collection():
    """Automatic collection off for the test (it would move the counts and stats)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    yield
    if was_enabled:
        gc.enable()


def _collections() -> list[int]:
    return [generation["collections"] for generation in gc.get_stats()]


def test_nothing_is_collected_before_it_is_due(manual_collection) -> None:
    collect = DueCollections((gc.get_count()[0] + 10_000, 10, 10))
    before = _collections()
    assert collect() == 0
    assert _collections() == before


def test_the_young_generation_alone_when_only_it_is_due(manual_collection) -> None:
    destroyed_on: list[str] = []
    _drop_a_cycle(destroyed_on)
    collect = DueCollections((0, 10**9, 10**9))
    before = _collections()
    assert collect() >= 1
    assert destroyed_on == [threading.main_thread().name]
    assert _collections() == [before[0] + 1, before[1], before[2]]


def test_a_full_collection_waits_for_a_quarter_more_long_lived_objects(
        manual_collection) -> None:
    collect = DueCollections((-1, -1, -1))  # every generation past its threshold
    assert collect.long_lived_total > 10_000  # the modules, already in the oldest generation
    survivors = [[i] for i in range(5000)]  # young now, long-lived after the next collection
    before = _collections()
    collect()
    assert _collections() == [before[0], before[1] + 1, before[2]]  # CPython's rule: not yet
    assert collect.long_lived_pending >= len(survivors)
    collect.long_lived_pending = collect.long_lived_total // 4 + 1  # as after many of those
    collect()
    assert _collections()[2] == before[2] + 1
    assert collect.long_lived_pending == 0
    assert collect.long_lived_total == len(gc.get_objects(generation=2))
