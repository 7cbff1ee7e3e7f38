"""Jobs: the one driver (progress, cancel between steps, result) and the GUI's job threads
(one job per kind, quiet replacement, loud cancel, low priority)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from app.core.jobs import Cancelled, Progress, run_job
from app.core.messages import JobFinished, JobKind, JobProgress
from app.session.jobs import JOB_NICENESS, Jobs


def _blocking_job(started: threading.Event, seen: dict):
    """Steps until it is cancelled (10 s at most), as a long scan would."""
    if sys.platform.startswith("linux"):
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    started.set()
    tick = threading.Event()
    for step in range(2000):
        yield Progress(step, 2000)
        tick.wait(0.005)  # one step of work
    return "finished"


def _done_job(text: str):
    yield Progress(1, 1)
    return text


def test_run_job_reports_steps_returns_the_result_and_cancels_between_steps():
    closed: list[str] = []

    def job():
        try:
            for i in range(5):
                yield Progress(i + 1, 5, f"step {i + 1}")
        finally:
            closed.append("finally")  # where a scan writes its checkpoint
        return "the result"

    seen: list[Progress] = []
    assert run_job(job(), seen.append) == "the result"
    assert [p.done for p in seen] == [1, 2, 3, 4, 5] and seen[-1].finished
    assert seen[0].line() == "step 1" and Progress(2, 3).line() == "2/3"

    cancel = threading.Event()
    closed.clear()
    steps: list[int] = []

    def cancel_at_two(p: Progress) -> None:
        steps.append(p.done)
        if p.done == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        run_job(job(), cancel_at_two, cancel)
    assert steps == [1, 2] and closed == ["finally"]  # no third step; cleanup ran


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
    jobs.start(JobKind.SCAN, _done_job("scan done"))
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

    def boom():
        yield Progress(0, 1)
        raise ValueError("bad folder\nsecond line")

    jobs.start(JobKind.ABLATE, boom())
    jobs.stop()
    (done,) = [e for e in events if isinstance(e, JobFinished)]
    assert not done.ok and done.text == "ablate failed: ValueError: bad folder"


def test_progress_reaches_the_gui_only_when_it_changes():
    events: list = []
    jobs = Jobs(events.append)

    def chatty():
        for _ in range(500):  # a render's steps: the same count of finished units
            yield Progress(0, 10, "0 / 10 units")
        yield Progress(10, 10, "10 / 10 units")
        return "done"

    jobs.start(JobKind.RENDER_LAYER, chatty())
    jobs.stop()
    progress = [(e.done, e.total) for e in events if isinstance(e, JobProgress)]
    assert progress == [(0, 10), (10, 10)]


@pytest.mark.parametrize("kind", list(JobKind))
def test_cancel_without_a_job_is_harmless(kind):
    Jobs(lambda e: None).cancel(kind)
