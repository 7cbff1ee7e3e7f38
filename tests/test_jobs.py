"""The job runner: one job per kind, quiet replacement, loud cancel, low priority."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from app.core.messages import JobFinished, JobKind
from app.jobs import JOB_NICENESS, Jobs


def _blocking_job(started: threading.Event, seen: dict):
    def work(cancel: threading.Event) -> str:
        if sys.platform.startswith("linux"):
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        started.set()
        cancel.wait(10)
        return "finished"

    return work


def test_replacement_is_quiet_cancel_is_reported_and_stop_joins():
    events: list = []
    jobs = Jobs(events.append)
    seen: dict = {}
    first = threading.Event()
    jobs.start(JobKind.RENDER, _blocking_job(first, seen))
    assert first.wait(5)
    second = threading.Event()
    jobs.start(JobKind.RENDER, _blocking_job(second, {}))  # replaces the first: no news
    assert second.wait(5)
    jobs.cancel(JobKind.RENDER)  # the user's cancel: reported
    jobs.start(JobKind.SCAN, lambda cancel: "scan done")
    jobs.stop()
    finished = [e for e in events if isinstance(e, JobFinished)]
    assert [(e.kind, e.ok) for e in finished if e.kind == JobKind.RENDER] == [
        (JobKind.RENDER, False)]
    assert "cancelled" in next(e for e in finished if e.kind == JobKind.RENDER).text
    assert (JobKind.SCAN, True, "scan done") in [(e.kind, e.ok, e.text) for e in finished]
    if sys.platform.startswith("linux"):
        assert seen["nice"] >= JOB_NICENESS  # the live view wins the CPU


def test_a_failing_job_reports_one_line():
    events: list = []
    jobs = Jobs(events.append)

    def boom(cancel: threading.Event) -> str:
        raise ValueError("bad folder\nsecond line")

    jobs.start(JobKind.ABLATE, boom)
    jobs.stop()
    (done,) = [e for e in events if isinstance(e, JobFinished)]
    assert not done.ok and done.text == "ablate failed: ValueError: bad folder"


@pytest.mark.parametrize("kind", list(JobKind))
def test_cancel_without_a_job_is_harmless(kind):
    Jobs(lambda e: None).cancel(kind)
