"""Jobs: the one driver (progress, cancel between steps, result) and the GUI's job threads
(one job per kind, quiet replacement, loud cancel, low priority)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from app.core.jobs import Cancelled, Progress, run_job
from app.core.requests import (
    AblationRequest,
    JobEvent,
    JobState,
    PreferredImageRequest,
    RenderLayerRequest,
    Request,
    ScanRequest,
)
from app.session.jobs import JOB_NICENESS, Jobs

RENDER = PreferredImageRequest("_blocks.4", 5)
SCAN = ScanRequest("/data", "_blocks.4")


def _ends(events: list) -> list[JobEvent]:
    return [e for e in events if isinstance(e, JobEvent) and e.finished]


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
    jobs.start(RENDER, _blocking_job(first, seen))
    assert first.wait(5)
    second = threading.Event()
    # the same request while it runs: dropped (the job is never made)
    assert not jobs.start(RENDER, lambda: pytest.fail("an equal request was made again"))
    assert jobs.start(PreferredImageRequest("_blocks.4", 6),  # replaces the first: no news
                      _blocking_job(second, {}))
    assert second.wait(5)
    jobs.cancel("render")  # the user's cancel: reported
    jobs.start(SCAN, _done_job("scan done"))
    jobs.stop()
    finished = _ends(events)
    assert [(e.request, e.state) for e in finished if e.kind == "render"] == [
        (PreferredImageRequest("_blocks.4", 6), JobState.CANCELLED)]
    assert "cancelled" in next(e for e in finished if e.kind == "render").text
    assert (SCAN, True, "scan done") in [(e.request, e.ok, e.text) for e in finished]
    if sys.platform.startswith("linux"):
        assert seen["nice"] >= JOB_NICENESS  # the live view wins the CPU


def test_a_failing_job_reports_one_line():
    events: list = []
    jobs = Jobs(events.append)

    def boom():
        yield Progress(0, 1)
        raise ValueError("bad folder\nsecond line")

    jobs.start(AblationRequest("/data", "_blocks.4"), boom())
    jobs.stop()
    (done,) = _ends(events)
    assert done.state == JobState.FAILED and done.text == "ablate failed: ValueError: bad folder"


def test_progress_reaches_the_gui_only_when_it_changes():
    events: list = []
    jobs = Jobs(events.append)

    def chatty():
        for _ in range(500):  # a render's steps: the same count of finished units
            yield Progress(0, 10, "0 / 10 units")
        yield Progress(10, 10, "10 / 10 units")
        return "done"

    jobs.start(RenderLayerRequest("_blocks.4"), chatty())
    jobs.stop()
    progress = [(e.done, e.total) for e in events if not e.finished]
    assert progress == [(0, 10), (10, 10)]


def test_a_step_with_a_preview_is_never_throttled_away():
    events: list = []
    jobs = Jobs(events.append)

    def previews():
        for i in range(50):  # faster than PROGRESS_S: only the first count would pass
            yield Progress(0, 10, "rendering", preview=f"image {i}")
        return "done"

    jobs.start(PreferredImageRequest("_blocks.4", 1), previews())
    jobs.stop()
    assert [e.preview for e in events if not e.finished] == [f"image {i}" for i in range(50)]


def test_each_request_type_declares_its_kind_label_and_classes():
    from app.session.jobs import registered

    types = registered()
    assert len({t.kind for t in types}) == len(types) >= 15  # one kind each
    assert all(isinstance(t.label, str) and t.label for t in types)
    assert {t.kind for t in types if t.quiet} == {"preferred_grid", "concepts", "icons",
                                                  "group_icons", "concept_names",
                                                  "atlas_cached"}
    assert not any(t.cancellable for t in types if t.quiet)


@pytest.mark.parametrize("kind", ["render", "scan", "no such kind"])
def test_cancel_without_a_job_is_harmless(kind):
    Jobs(lambda e: None).cancel(kind)


def test_requests_with_arrays_compare_by_identity():
    import numpy as np

    from app.core.requests import AccentuateRequest

    image = np.zeros((4, 4, 3), np.uint8)
    assert AccentuateRequest(image, "a", 1) != AccentuateRequest(image.copy(), "a", 1)
    request: Request = AccentuateRequest(image, "a", 1)
    assert request == request
