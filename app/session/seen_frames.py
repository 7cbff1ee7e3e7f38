"""The frames this session has seen, kept for an atlas of the session.

A user walks around with a camera, then asks what the network saw: Analysis → Atlas of
this session makes the shown layer's atlas from these frames, with the same job as a
folder's. So the session keeps a sample of what the capture delivered: at most one frame a
second (`every_s`; a still image or a frozen frame resent is kept once), downscaled to
`max_side` and stored as a JPEG in a folder of this session's under the cache. Past
`limit` frames it keeps a uniform sample of everything seen (reservoir sampling: frame n
replaces a random slot with probability limit/n), so a long walk is represented end to
end in bounded disk (600 frames at 320 px: ~15 MB).

`offer` runs on the capture thread (a resize and an encode once a second: a few ms);
`snapshot` hard-links the kept files into a folder of their own for a job to read, so
frames that arrive meanwhile never change what the atlas is made of (and its cache key,
the files' fingerprint, names exactly what it saw). The folder and its snapshots are
removed when the session stops, and those of sessions that died without stopping when the
next one starts.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from app.core.messages import Frame

EVERY_S = 1.0
LIMIT = 600
MAX_SIDE = 320
JPEG_QUALITY = 90


class SeenFrames:
    """A bounded, uniform sample of the frames a session has seen (module doc)."""

    def __init__(self, root: Path, every_s: float = EVERY_S, limit: int = LIMIT,
                 max_side: int = MAX_SIDE, seed: int = 0) -> None:
        self.root = root
        self.folder = root / f"{os.getpid()}-{int(time.time())}"
        self.every_s, self.limit, self.max_side = every_s, limit, max_side
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._last_time = -math.inf
        self._last_key: tuple[str, int] | None = None
        self._seen = 0  # frames eligible so far (the reservoir's n)
        self._kept = 0  # slots filled
        self._snapshots = 0
        self.failed: str | None = None  # why frames stopped being kept (a full disk)
        _remove_dead_sessions(root)

    @property
    def count(self) -> int:
        with self._lock:
            return self._kept

    def offer(self, frame: Frame) -> None:
        """Keep `frame` if a second has passed since the last kept one (capture thread)."""
        key = (frame.source, frame.index)
        with self._lock:
            if (self.failed is not None or frame.timestamp - self._last_time < self.every_s
                    or key == self._last_key):
                return
            self._last_time, self._last_key = frame.timestamp, key
            self._seen += 1
            slot = self._kept if self._kept < self.limit else self._rng.randrange(self._seen)
            if slot >= self.limit:
                return
            try:
                self._write(slot, frame.image)
            except OSError as exc:
                self.failed = str(exc).splitlines()[0]
                return
            self._kept = max(self._kept, slot + 1)

    def _write(self, slot: int, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        scale = self.max_side / max(h, w)
        small = rgb if scale >= 1 else cv2.resize(
            rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError("JPEG encoding failed")
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"frame{slot:04d}.jpg"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, path)

    def snapshot(self) -> Path:
        """The kept frames as they are now, in a folder of their own (hard links, copies
        where the file system has none); empty when none is kept."""
        with self._lock:
            self._snapshots += 1
            out = self.folder / f"atlas{self._snapshots:03d}"
            out.mkdir(parents=True, exist_ok=True)
            for src in sorted(self.folder.glob("frame*.jpg")):
                try:
                    os.link(src, out / src.name)
                except OSError:
                    shutil.copy2(src, out / src.name)
        return out

    def remove(self) -> None:
        """Everything this session kept (at stop)."""
        shutil.rmtree(self.folder, ignore_errors=True)


def _remove_dead_sessions(root: Path) -> None:
    """Folders of sessions whose process is gone (a crash, a kill) are not anyone's."""
    if not root.is_dir():
        return
    for folder in root.iterdir():
        pid = folder.name.partition("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's: not ours to remove
    return True
