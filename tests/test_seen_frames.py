"""The frames a session keeps for an atlas of the session: one a second, a still frame once,
downscaled, a bounded uniform sample of a long session, snapshots that later frames do not
change, nothing left behind; and the atlas job on them (real photos, the bundled model)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.messages import Frame
from app.session.seen_frames import SeenFrames
from tests.photos import chelsea, coffee


def frame(image: np.ndarray, index: int, t: float, source: str = "camera 0") -> Frame:
    return Frame(image, index, t, source)


def kept(seen: SeenFrames) -> list[Path]:
    return sorted(seen.folder.glob("frame*.jpg"))


def test_one_frame_a_second_and_a_still_frame_once(tmp_path):
    seen = SeenFrames(tmp_path)
    cat = chelsea()
    for i in range(30):  # 30 frames at 10 fps: 3 seconds
        seen.offer(frame(cat, i, 100.0 + i / 10))
    assert seen.count == 3 and len(kept(seen)) == 3
    still = SeenFrames(tmp_path / "still")
    for k in range(5):  # a still image resent (a view change), seconds apart
        still.offer(frame(cat, 0, 200.0 + k, "cat.jpg"))
    assert still.count == 1


def test_frames_are_downscaled_jpegs_of_what_was_seen(tmp_path):
    seen = SeenFrames(tmp_path, max_side=320)
    seen.offer(frame(chelsea(), 0, 0.0))  # 300 × 451
    (path,) = kept(seen)
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert img.shape == (213, 320, 3)
    small = cv2.resize(chelsea(), (320, 213), interpolation=cv2.INTER_AREA)
    assert np.abs(img.astype(int) - small.astype(int)).mean() < 4  # JPEG at 90


def test_a_long_session_is_sampled_uniformly_in_bounded_space(tmp_path):
    seen = SeenFrames(tmp_path, every_s=0.0, limit=60, max_side=16)
    for i in range(1200):  # each frame's first pixel holds its third of the session
        img = np.full((16, 16, 3), 40 + 80 * (i * 3 // 1200), np.uint8)
        seen.offer(frame(img, i, float(i)))
    files = kept(seen)
    assert len(files) == 60
    thirds = [round((int(cv2.imread(str(f))[0, 0, 0]) - 40) / 80) for f in files]
    counts = [thirds.count(k) for k in range(3)]
    assert min(counts) >= 10, counts  # ~20 each; the first 60 frames alone would be 60/0/0


def test_a_snapshot_is_not_changed_by_later_frames_and_nothing_is_left(tmp_path):
    seen = SeenFrames(tmp_path, every_s=0.0, limit=2)
    seen.offer(frame(chelsea(), 0, 0.0))
    seen.offer(frame(coffee(), 1, 1.0))
    snap = seen.snapshot()
    before = {p.name: p.read_bytes() for p in snap.iterdir()}
    assert len(before) == 2
    for i in range(2, 40):  # the reservoir replaces kept frames now
        seen.offer(frame(np.full((32, 32, 3), i, np.uint8), i, float(i)))
    assert {p.name: p.read_bytes() for p in snap.iterdir()} == before
    seen.remove()
    assert not seen.folder.exists()


def test_folders_of_dead_sessions_are_removed_and_live_ones_kept(tmp_path):
    dead = tmp_path / "999999999-1"
    dead.mkdir()
    (dead / "frame0000.jpg").write_bytes(b"x")
    live = tmp_path / f"{os.getppid()}-1"  # our parent: alive
    live.mkdir()
    SeenFrames(tmp_path)
    assert not dead.exists() and live.exists()


@pytest.mark.slow
def test_the_session_atlas_job_maps_the_frames_seen(tmp_path, monkeypatch):
    import dataclasses

    import torch
    from skimage import data as skdata

    import app.session.jobs.atlas as atlas_jobs
    from app.core.atlas_messages import AtlasReady
    from app.core.requests import SessionAtlasRequest
    from app.core.settings import CacheSettings, Settings
    from app.engine.runtime.models import load_model
    from app.session.jobs import JobContext, Refused, drain, make_job

    monkeypatch.setattr(atlas_jobs, "ICON_STEPS", 2)
    monkeypatch.setattr(atlas_jobs, "ICON_SIZE", 32)
    loaded = load_model("efficientnet_lite0", torch.device("cpu"), Settings().model)
    settings = dataclasses.replace(Settings(), cache=CacheSettings(str(tmp_path / "cache")))
    seen = SeenFrames(tmp_path / "frames")
    ctx = JobContext(settings, loaded, {"_blocks.5": 80}, seen.snapshot)
    seen.offer(frame(chelsea(), 0, 0.0))
    with pytest.raises(Refused, match="has kept 1 frame "):
        drain(make_job(ctx, SessionAtlasRequest("_blocks.5", 4)))
    for i, name in enumerate(("coffee", "astronaut", "rocket", "camera", "coins")):
        img = getattr(skdata, name)()
        seen.offer(frame(np.dstack([img] * 3) if img.ndim == 2 else img[..., :3], i + 1,
                         float(i + 1)))
    _, outcome = drain(make_job(ctx, SessionAtlasRequest("_blocks.5", 4)))
    message = outcome.result
    assert isinstance(message, AtlasReady) and message.layer == "_blocks.5"
    assert message.images == 6  # every frame kept, each one image of the atlas
    assert sum(c.count for c in message.cells) > 0


@pytest.mark.slow
def test_an_atlas_of_a_folder_without_images_says_so_in_one_line(tmp_path):
    import dataclasses

    import torch

    from app.core.requests import AtlasRequest
    from app.core.settings import CacheSettings, Settings
    from app.engine.runtime.models import load_model
    from app.session.jobs import JobContext, Refused, drain, make_job

    loaded = load_model("efficientnet_lite0", torch.device("cpu"), Settings().model)
    settings = dataclasses.replace(Settings(), cache=CacheSettings(str(tmp_path / "cache")))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    ctx = JobContext(settings, loaded, {"_blocks.5": 80})
    with pytest.raises(Refused) as err:
        drain(make_job(ctx, AtlasRequest(str(empty), "_blocks.5", 4)))
    text = str(err.value)
    assert "no images" in text and "Error" not in text and "\n" not in text
