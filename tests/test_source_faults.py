"""The real session and the real CLI on real bad files (issue 22, item 7): each bad source
ends in a `SourceFailed` naming what went wrong, a model that cannot load at start falls
back to the bundled one, and `--screenshot` on a bad source exits 2 with the line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from app.core.messages import ModelReady, Notice, NoticeLevel, SourceFailed, SourceReady
from app.core.settings import Settings, SourceSettings
from tests.photos import chelsea, write_jpeg
from tests.waiting import collect_events

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parent.parent


def _empty_folder(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _not_images(tmp: Path) -> Path:
    folder = tmp / "junk"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a picture")
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 junk, not a jpeg")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def _corrupt(tmp: Path) -> Path:
    path = tmp / "corrupt.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    return path


def _too_big(tmp: Path) -> Path:
    return write_jpeg(tmp / "big.jpg", chelsea())  # 451×300 against a 10,000-pixel limit


BAD_SOURCES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty folder": (_empty_folder, "no images in this folder"),
    "folder of non-images": (_not_images, "none of its 2 images could be read"),
    "corrupt image": (_corrupt, "corrupt.jpg"),
    "over the pixel limit": (_too_big, "big.jpg"),
}


@pytest.mark.parametrize("kind", list(BAD_SOURCES))
def test_a_bad_source_ends_in_source_failed_with_its_reason(tmp_path, kind: str) -> None:
    from app.session.live import LiveSession

    make, expected = BAD_SOURCES[kind]
    spec = str(make(tmp_path))
    session = LiveSession(Settings(source=SourceSettings(max_image_pixels=10_000)), CPU)
    try:
        session.open_source(spec)
        events = collect_events(session, lambda ev: any(isinstance(e, SourceFailed) for e in ev),
                                timeout=30)
    finally:
        session.stop()
    failed = next(e for e in events if isinstance(e, SourceFailed))
    assert failed.spec == spec and expected in failed.reason
    assert not failed.still_showing and "\n" not in failed.reason
    assert not any(isinstance(e, SourceReady) for e in events)
    assert any(isinstance(e, Notice) and e.level is NoticeLevel.ERROR and e.text == failed.reason
               for e in events)


def test_a_bad_source_while_one_shows_leaves_it_showing(tmp_path) -> None:
    from app.session.live import LiveSession

    cat = write_jpeg(tmp_path / "cat.jpg", chelsea())
    session = LiveSession(Settings(), CPU)
    try:
        session.open_source(str(cat))
        collect_events(session, lambda ev: any(isinstance(e, SourceReady) for e in ev))
        session.open_source(str(_corrupt(tmp_path)))
        events = collect_events(session, lambda ev: any(isinstance(e, SourceFailed) for e in ev))
    finally:
        session.stop()
    assert next(e for e in events if isinstance(e, SourceFailed)).still_showing


@pytest.mark.slow
def test_a_model_that_fails_at_start_falls_back_to_the_bundled_one(tmp_path) -> None:
    from app.session.live import LiveSession

    junk = tmp_path / "mine.pt"
    junk.write_bytes(b"not a checkpoint")
    session = LiveSession(Settings(), CPU)
    try:
        session.load_model(str(junk))
        events = collect_events(session, lambda ev: any(isinstance(e, ModelReady) for e in ev))
        # a later failure keeps the model that runs, as before
        session.load_model(str(junk))
        later = collect_events(session, lambda ev: any(
            isinstance(e, Notice) and e.level is NoticeLevel.ERROR for e in ev))
    finally:
        session.stop()
    assert next(e for e in events if isinstance(e, ModelReady)).name == "efficientnet_lite0"
    warnings = [e.text for e in events if isinstance(e, Notice)
                and e.level is NoticeLevel.WARNING]
    assert any("mine.pt" in t and "bundled efficientnet_lite0" in t for t in warnings)
    assert not any(isinstance(e, ModelReady) for e in later)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["empty folder", "corrupt image"])
def test_screenshot_of_a_bad_source_exits_2_with_the_line(tmp_path, kind: str) -> None:
    make, expected = BAD_SOURCES[kind]
    source = make(tmp_path)
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    # it used to wait for frames until killed (the window's own fallback is 120 s)
    proc = subprocess.run(
        [sys.executable, "-m", "app", "--source", str(source), "--screenshot", str(out),
         "--frames", "3", "--device", "cpu"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=90,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("deepvis: ") and expected in last
    assert "Traceback" not in proc.stderr
    assert not out.exists()
