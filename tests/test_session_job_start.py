"""A folder job shows its bar from the click on (issue 22.14, the window's scan): the
session posts a busy step before the job's first real one, which comes only after its
first batch."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from app.core.messages import ModelReady, Notice, NoticeLevel
from app.core.requests import JobEvent, ScanRequest
from app.core.settings import Settings
from app.session.live import LiveSession
from tests.photos import chelsea, coffee, write_jpeg
from tests.waiting import collect_events

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
