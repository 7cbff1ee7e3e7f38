"""Where frames come from: a camera, a video file, one image, or a folder of images.

Every source hands out RGB uint8 (H, W, 3) arrays. Live sources (camera, video) give a new
frame on every `read()`; still sources (image, folder) give one when opened or stepped and
None after that, so a capture loop can idle instead of re-sending the same picture.
Sources are not thread-safe: one capture thread owns each.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from app.capture.images import IMAGE_EXTENSIONS, ImageError, is_image_path, read_image, to_rgb8
from app.core.settings import SourceSettings


class SourceError(RuntimeError):
    """A source that cannot be opened or stopped delivering; one-line message."""


class Source(ABC):
    """One stream of RGB frames; see the module docstring for live versus still."""

    kind: ClassVar[str]
    is_live: ClassVar[bool]

    def __init__(self) -> None:
        # Problems that did not stop the source (a skipped file), for the status bar.
        self.last_error: str | None = None

    @property
    @abstractmethod
    def label(self) -> str:
        """What is showing, for display: "camera 0", "cat.jpg"."""

    @property
    @abstractmethod
    def is_open(self) -> bool: ...

    @abstractmethod
    def open(self) -> None:
        """Acquire the device or file; raises SourceError. Opening an open source reopens it."""

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next frame, RGB uint8 (H, W, 3); None: nothing new right now.

        Raises SourceError when the source is gone (camera unplugged, file deleted).
        """

    @abstractmethod
    def close(self) -> None:
        """Release the device or file; safe to call twice or on a source never opened."""

    def step(self, delta: int) -> None:
        """Move `delta` items (folders); other still sources show their frame again."""
        return None  # live sources have nothing to step through

    @property
    def count(self) -> int:
        """Items to step through: a folder's images, 1 for an image, 0 for live sources."""
        return 0

    @property
    def position(self) -> int:
        """Index of the current item (folder) or frame (video)."""
        return 0

    @property
    def next_frame_due(self) -> float:
        """`time.perf_counter()` time before which `read()` should not be called; 0: any time."""
        return 0.0

    def __enter__(self) -> Source:
        if not self.is_open:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CameraSource(Source):
    kind = "camera"
    is_live = True

    def __init__(
        self,
        index: int = 0,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        *,
        max_failures: int = 5,
    ) -> None:
        super().__init__()
        self.index = index
        self.width, self.height, self.fps = width, height, fps
        # Some drivers drop the odd grab; only this many failures in a row mean "lost".
        self.max_failures = max_failures
        self._cap: cv2.VideoCapture | None = None
        self._pending: np.ndarray | None = None
        self._failures = 0

    @property
    def label(self) -> str:
        return f"camera {self.index}"

    @property
    def is_open(self) -> bool:
        return self._cap is not None

    def open(self) -> None:
        self.close()
        # a missing camera makes OpenCV print backend warnings to stderr; the app reports
        # it in one line of its own, so keep OpenCV to real errors
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"no camera at index {self.index}")
        # Requests, not guarantees: the driver picks the nearest mode it supports.
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        # A one-frame driver buffer keeps latency low where the backend honours it.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            raise SourceError(f"camera {self.index} opened but delivers no frames")
        self._cap, self._pending, self._failures = cap, to_rgb8(frame), 0

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            raise SourceError(f"{self.label} is not open")
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        ok, frame = self._cap.read()
        if ok and frame is not None:
            self._failures = 0
            return to_rgb8(frame)
        self._failures += 1
        if self._failures >= self.max_failures:
            raise SourceError(f"{self.label} lost")
        return None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap, self._pending = None, None


class VideoSource(Source):
    kind = "video"
    is_live = True
    _DEFAULT_FPS = 25.0
    # Falling further behind than this (a pause, a slow machine) resets the clock instead
    # of racing through frames to catch up.
    _MAX_LAG_S = 0.25

    def __init__(self, path: str | Path, loop: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.loop = loop
        self.fps = self._DEFAULT_FPS
        self.loops = 0  # times the video wrapped around
        self._cap: cv2.VideoCapture | None = None
        self._pending: np.ndarray | None = None
        self._frame = 0
        self._due = 0.0
        self._ended = False

    @property
    def label(self) -> str:
        return self.path.name

    @property
    def is_open(self) -> bool:
        return self._cap is not None

    @property
    def ended(self) -> bool:
        """True once a non-looping video has played its last frame."""
        return self._ended

    @property
    def position(self) -> int:
        return self._frame

    @property
    def next_frame_due(self) -> float:
        return self._due

    def open(self) -> None:
        self.close()
        cap, first = self._open_capture()
        fps = cap.get(cv2.CAP_PROP_FPS)
        # Containers without a usable rate report 0, NaN or nonsense like 90000.
        self.fps = fps if 1.0 <= fps <= 240.0 else self._DEFAULT_FPS
        self._cap, self._pending = cap, first
        self._frame, self._due, self._ended = 0, 0.0, False

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            raise SourceError(f"{self.label} is not open")
        if self._ended:
            return None
        frame = self._pending if self._pending is not None else self._next_frame()
        self._pending = None
        if frame is None:
            return None
        self._advance_clock()
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap, self._pending = None, None

    def _next_frame(self) -> np.ndarray | None:
        assert self._cap is not None
        ok, frame = self._cap.read()
        if ok and frame is not None:
            self._frame += 1
            return to_rgb8(frame)
        if not self.loop:
            self._ended = True
            return None
        # Seeking to 0 fails on some containers/codecs; reopening always works.
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        ok, frame = self._cap.read()
        if not ok or frame is None:
            self._cap.release()
            self._cap = None
            self._cap, frame = self._open_capture()
        self.loops += 1
        self._frame = 0
        return to_rgb8(frame)

    def _open_capture(self) -> tuple[cv2.VideoCapture, np.ndarray]:
        if not self.path.is_file():
            raise SourceError(f"cannot open {self.path}: no such file")
        cap = cv2.VideoCapture(str(self.path))
        ok, frame = cap.read() if cap.isOpened() else (False, None)
        if not ok or frame is None:
            cap.release()
            raise SourceError(f"cannot open {self.path}: not a video OpenCV can read")
        return cap, to_rgb8(frame)

    def _advance_clock(self) -> None:
        now = time.perf_counter()
        self._due += 1.0 / self.fps
        if self._due < now - self._MAX_LAG_S:
            self._due = now + 1.0 / self.fps


class ImageSource(Source):
    kind = "image"
    is_live = False

    def __init__(self, path: str | Path, max_pixels: int = 80_000_000) -> None:
        super().__init__()
        self.path = Path(path)
        self.max_pixels = max_pixels
        self._image: np.ndarray | None = None
        self._pending = False

    @property
    def label(self) -> str:
        return self.path.name

    @property
    def is_open(self) -> bool:
        return self._image is not None

    @property
    def count(self) -> int:
        return 1

    def open(self) -> None:
        try:
            self._image = read_image(self.path, self.max_pixels)
        except ImageError as exc:
            raise SourceError(str(exc)) from None
        self._pending = True

    def read(self) -> np.ndarray | None:
        if self._image is None:
            raise SourceError(f"{self.label} is not open")
        if not self._pending:
            return None
        self._pending = False
        return self._image

    def step(self, delta: int) -> None:
        self._pending = self._image is not None

    def close(self) -> None:
        self._image, self._pending = None, False


class FolderSource(Source):
    """The images directly inside one folder, in natural name order ("2.jpg" < "10.jpg")."""

    kind = "folder"
    is_live = False

    def __init__(self, path: str | Path, max_pixels: int = 80_000_000) -> None:
        super().__init__()
        self.path = Path(path)
        self.max_pixels = max_pixels
        self._files: list[Path] = []
        self._position = 0
        self._image: np.ndarray | None = None
        self._pending = False

    @property
    def label(self) -> str:
        if self._image is None or not self._files:
            return self.path.name or str(self.path)
        return self._files[self._position].name

    @property
    def is_open(self) -> bool:
        return self._image is not None

    @property
    def count(self) -> int:
        return len(self._files)

    @property
    def position(self) -> int:
        return self._position

    @property
    def files(self) -> tuple[Path, ...]:
        """The images still in the rotation (unreadable ones are dropped when met)."""
        return tuple(self._files)

    def open(self) -> None:
        self.close()
        if not self.path.is_dir():
            raise SourceError(f"cannot open {self.path}: not a folder")
        try:
            entries = list(self.path.iterdir())
        except OSError as exc:
            raise SourceError(f"cannot list {self.path}: {exc.strerror or exc}") from None
        # Dot files include macOS "._name.jpg" resource forks, which are not images.
        self._files = sorted(
            (p for p in entries if is_image_path(p) and not p.name.startswith(".") and p.is_file()),
            key=_natural_key,
        )
        if not self._files:
            kinds = " ".join(sorted(IMAGE_EXTENSIONS))
            raise SourceError(f"{self.path}: no images in this folder (looked for {kinds})")
        total = len(self._files)
        if not self._load(0, +1):
            raise SourceError(
                f"{self.path}: none of its {total} images could be read ({self.last_error})"
            )

    def read(self) -> np.ndarray | None:
        if self._image is None:
            raise SourceError(f"{self.path} is not open")
        if not self._pending:
            return None
        self._pending = False
        return self._image

    def step(self, delta: int) -> None:
        if self._image is None or not self._files:
            return
        if not self._load(self._position + delta, -1 if delta < 0 else +1):
            # every file has turned unreadable since the folder was opened: the next read
            # fails and the capture thread's reopen says what is wrong with the folder now
            self._image, self._pending = None, False

    def close(self) -> None:
        self._files, self._position = [], 0
        self._image, self._pending = None, False

    def _load(self, index: int, direction: int) -> bool:
        """Show the first readable image from `index` on in `direction`, wrapping around."""
        while self._files:
            index %= len(self._files)
            try:
                image = read_image(self._files[index], self.max_pixels)
            except ImageError as exc:
                self.last_error = f"skipped {exc}"
                del self._files[index]
                if self._position > index:
                    self._position -= 1
                # Going forward, the next file has slid into `index`; going back, it is
                # the one before.
                if direction < 0:
                    index -= 1
                continue
            self._image, self._position, self._pending = image, index, True
            return True
        return False


def open_source(spec: str, settings: SourceSettings | None = None) -> Source:
    """Open "camera:N" (or "N"), a folder, an image or a video; raises SourceError."""
    settings = settings or SourceSettings()
    spec = spec.strip()
    camera = re.fullmatch(r"(?:camera:?)?(\d*)", spec, flags=re.IGNORECASE)
    if camera and spec and (camera.group(1) or spec.lower().startswith("camera")):
        source: Source = CameraSource(
            int(camera.group(1) or 0),
            settings.camera_width,
            settings.camera_height,
            settings.camera_fps,
        )
        source.open()
        return source
    if not spec:
        raise SourceError("no source given")
    path = Path(spec).expanduser()
    if path.is_dir():
        source = FolderSource(path, settings.max_image_pixels)
    elif not path.exists():
        raise SourceError(f"cannot open {spec}: no such file or folder")
    elif is_image_path(path):
        source = ImageSource(path, settings.max_image_pixels)
    else:
        return _open_video_or_image(path, spec, settings)
    source.open()
    return source


def _open_video_or_image(path: Path, spec: str, settings: SourceSettings) -> Source:
    video = VideoSource(path, loop=settings.video_loop)
    try:
        video.open()
        return video
    except SourceError:
        pass
    # OpenCV decodes more still formats than the extensions we list (.jfif, .pgm, .jp2…).
    image = ImageSource(path, settings.max_image_pixels)
    try:
        image.open()
        return image
    except SourceError:
        raise SourceError(f"cannot open {spec}: not an image, video or folder") from None


def _natural_key(path: Path) -> tuple[object, ...]:
    parts = re.split(r"(\d+)", path.name.casefold())
    return tuple(int(p) if p.isdigit() else p for p in parts)
