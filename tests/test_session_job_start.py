"""A folder job shows its bar from the click on (issue 22.14, the window's scan): the
session posts a busy step before the job's first real one, which comes only after its
first batch."""

from __future__ import annotations

import dataclasses

import cv2
import pytest
import torch

from app.core.messages import ModelReady, Notice, NoticeLevel, SourceReady
from app.core.requests import JobEvent, ScanRequest
from app.core.settings import Settings
from app.session.live import LiveSession
from tests.photos import chelsea, coffee, write_jpeg
from tests.waiting import collect_events, next_result

pytestmark = pytest.mark.slow


def test_a_scan_shows_a_busy_bar_before_its_first_batch_and_none_when_refused(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    write_jpeg(photos / "cat.jpg", chelsea())
    write_jpeg(photos / "cup.jpg", coffee())
    s = Settings()
    settings = dataclasses.replace(
        s, cache=dataclasses.replace(s.cache, dir=str(tmp_path / "cache")),
        scan=dataclasses.replace(s.scan, workers=0, batch_size=2, top_k=3))
    session = LiveSession(settings, torch.device("cpu"))
    try:
        session.load_model("efficientnet_lite0")
        collect_events(session, lambda ev: any(isinstance(e, ModelReady) for e in ev))
        session.submit(ScanRequest(str(tmp_path / "no such folder"), "_blocks.4"))
        refused = collect_events(session, lambda ev: any(
            isinstance(e, Notice) and e.level is NoticeLevel.ERROR for e in ev))
        session.submit(ScanRequest(str(photos), "_blocks.4"))
        events = collect_events(session, lambda ev: any(
            isinstance(e, JobEvent) and e.finished for e in ev), timeout=180)
    finally:
        session.stop()
    assert not any(isinstance(e, JobEvent) for e in refused)  # no bar left behind
    steps = [e for e in events if isinstance(e, JobEvent) and e.kind == "scan"]
    first = steps[0]
    assert (first.done, first.total, first.text) == (0, 0, "scan: starting…")
    assert not first.finished
    assert any(e.total > 0 for e in steps[1:-1])  # then the real counts
    assert steps[-1].finished and steps[-1].ok


def test_a_dissection_in_the_window_runs_beside_the_live_view_and_leaves_its_threads(
        tmp_path):
    """A dissection started from the window (one pass, its tally on threads of their own)
    finishes with the concepts of the layer while the live view keeps showing frames, and
    leaves torch's thread count for threads started later as it found it."""
    import threading
    import time

    from skimage import data as skdata

    from app.core.messages import LayerConcepts
    from app.core.requests import DissectRequest
    from app.session.live import sample_video

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry"):
        write_jpeg(photos / f"{name}.jpg", getattr(skdata, name)())
    s = Settings()
    settings = dataclasses.replace(
        s, cache=dataclasses.replace(s.cache, dir=str(tmp_path / "cache")),
        scan=dataclasses.replace(s.scan, workers=0),  # the decoding workers of every pass
        dissect=dataclasses.replace(s.dissect, batch_size=2, top_k=2))
    before = torch.get_num_threads()
    session = LiveSession(settings, torch.device("cpu"))
    results = []
    try:
        session.load_model("efficientnet_lite0")
        session.open_source(str(sample_video()))
        collect_events(session, lambda ev: any(isinstance(e, SourceReady) for e in ev)
                       and any(isinstance(e, ModelReady) for e in ev))
        next_result(session)  # the live view is showing frames
        session.submit(DissectRequest(str(photos), "_blocks.4"))
        events: list[object] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any(
                isinstance(e, JobEvent) and e.kind == "dissect" and e.finished for e in events):
            events.extend(session.poll_events())
            result = session.poll_result()
            if result is not None:
                results.append(result)
            time.sleep(0.02)
    finally:
        session.stop()
    finished = [e for e in events
                if isinstance(e, JobEvent) and e.kind == "dissect" and e.finished]
    assert finished and finished[-1].ok, [e for e in events if not isinstance(e, JobEvent)]
    concepts = finished[-1].result
    assert isinstance(concepts, LayerConcepts)
    assert concepts.layer == "_blocks.4" and len(concepts.units) == 40
    for unit in concepts.units:  # each unit's strip (the window shows it): top_k tiles of 112
        strip = cv2.imread(unit.strip)
        assert strip is not None and strip.shape[0] == 112 and strip.shape[1] >= 2 * 112
    assert len(results) >= 3  # the live view went on while the job ran
    seen: list[int] = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert seen == [before]
