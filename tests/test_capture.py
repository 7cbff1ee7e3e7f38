"""Capture: decoding awkward image files, sources, and the capture thread (no camera needed)."""

from __future__ import annotations

import shutil
import struct
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.capture import (
    CaptureThread,
    FolderSource,
    ImageError,
    ImageSource,
    Source,
    SourceError,
    VideoSource,
    downscale_to,
    open_source,
    read_image,
    to_rgb8,
)
from app.capture import thread as capture_thread
from app.core.messages import Frame
from app.core.settings import SourceSettings
from app.core.slot import LatestSlot
from tests.waiting import wait_until

ASSETS = Path(__file__).parents[1] / "assets"
SAMPLES = sorted((ASSETS / "samples").glob("*.jpg"))
VIDEO = ASSETS.parent / "app" / "assets" / "sample.mp4"


def write(path: Path, image: np.ndarray) -> Path:
    ok, data = cv2.imencode(path.suffix, image)
    assert ok
    data.tofile(path)
    return path





def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def palette_png(indices: np.ndarray, palette: list[tuple[int, int, int]]) -> bytes:
    """An 8-bit indexed-colour PNG (colour type 3), which OpenCV cannot write itself."""
    h, w = indices.shape
    raw = b"".join(b"\x00" + row.astype(np.uint8).tobytes() for row in indices)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
        + png_chunk(b"PLTE", b"".join(bytes(c) for c in palette))
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


# -- read_image -------------------------------------------------------------------------


def test_sample_assets_exist_and_are_small() -> None:
    assert len(SAMPLES) >= 4
    assert VIDEO.is_file()
    total = sum(p.stat().st_size for p in [*SAMPLES, VIDEO])
    assert total < 3_000_000


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_real_photos_decode_as_rgb(path: Path) -> None:
    image = read_image(path)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert max(image.shape[:2]) <= 640
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(image, bgr[:, :, ::-1])


def test_unicode_path(tmp_path: Path) -> None:
    target = tmp_path / "фото kätzchen 猫.jpg"
    shutil.copyfile(SAMPLES[0], target)
    np.testing.assert_array_equal(read_image(target), read_image(SAMPLES[0]))


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    ok, data = cv2.imencode(".jpg", np.zeros((20, 40, 3), np.uint8))
    assert ok
    # APP1 "Exif" with one IFD entry: Orientation (0x0112) = 6, "rotate 90° clockwise".
    tiff = b"II*\x00" + struct.pack("<IHHHIHHI", 8, 1, 0x0112, 3, 1, 6, 0, 0)
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff
    raw = data.tobytes()
    path = tmp_path / "phone.jpg"
    path.write_bytes(raw[:2] + app1 + raw[2:])
    assert read_image(path).shape == (40, 20, 3)


def test_16_bit_png_scales_to_8_bit(tmp_path: Path) -> None:
    bgr = np.zeros((2, 3, 3), np.uint16)
    bgr[0, 0] = (0, 257, 65535)  # B, G, R
    bgr[1, 2] = (65535, 32896, 0)
    image = read_image(write(tmp_path / "deep.png", bgr))
    assert image.dtype == np.uint8 and image.shape == (2, 3, 3)
    assert tuple(image[0, 0]) == (255, 1, 0)  # R, G, B
    assert tuple(image[1, 2]) == (0, 128, 255)


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.array([[0, 100], [200, 255]], np.uint8)
    image = read_image(write(tmp_path / "gray.png", gray))
    assert image.shape == (2, 2, 3)
    for c in range(3):
        np.testing.assert_array_equal(image[:, :, c], gray)


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    bgra = np.zeros((1, 3, 4), np.uint8)
    bgra[0, 0] = (0, 0, 200, 0)  # fully transparent red → white
    bgra[0, 1] = (0, 0, 200, 255)  # opaque red
    bgra[0, 2] = (0, 0, 0, 128)  # half-transparent black → mid grey
    image = read_image(write(tmp_path / "alpha.png", bgra))
    assert tuple(image[0, 0]) == (255, 255, 255)
    assert tuple(image[0, 1]) == (200, 0, 0)
    assert tuple(image[0, 2]) == (127, 127, 127)


def test_palette_png(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    path.write_bytes(palette_png(np.array([[0, 1], [2, 1]]), [(255, 0, 0), (0, 128, 0), (1, 2, 3)]))
    image = read_image(path)
    assert tuple(image[0, 0]) == (255, 0, 0)
    assert tuple(image[0, 1]) == (0, 128, 0)
    assert tuple(image[1, 0]) == (1, 2, 3)


def test_float_tiff(tmp_path: Path) -> None:
    bgr = np.zeros((1, 3, 3), np.float32)
    bgr[0, 1] = 0.5
    bgr[0, 2] = (1.0, 0.0, 0.25)
    image = read_image(write(tmp_path / "float.tiff", bgr))
    assert tuple(image[0, 0]) == (0, 0, 0)
    assert tuple(image[0, 1]) == (128, 128, 128)
    assert tuple(image[0, 2]) == (64, 0, 255)


def corrupt_files(tmp_path: Path) -> dict[str, Path]:
    random_bytes = tmp_path / "noise.jpg"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(5000))
    truncated = tmp_path / "truncated.jpg"
    whole = SAMPLES[0].read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    return {
        "random": random_bytes,
        "truncated": truncated,
        "empty": empty,
        "text": text,
        "missing": tmp_path / "missing.jpg",
        "folder": tmp_path,
    }


@pytest.mark.parametrize("kind", ["random", "truncated", "empty", "text", "missing", "folder"])
def test_bad_files_raise_image_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = corrupt_files(tmp_path)[kind]
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message


def test_too_many_pixels_refused_from_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "big.png", np.zeros((100, 200, 3), np.uint8))
    with pytest.raises(ImageError, match="too large") as info:
        read_image(path, max_pixels=10_000)
    assert str(path) in str(info.value)
    assert read_image(path, max_pixels=20_000).shape == (100, 200, 3)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".webp", ".tiff"])
def test_too_many_pixels_refused_for_every_format(tmp_path: Path, suffix: str) -> None:
    path = write(tmp_path / f"big{suffix}", np.full((100, 200, 3), 90, np.uint8))
    with pytest.raises(ImageError, match="too large"):
        read_image(path, max_pixels=19_999)


def test_to_rgb8_and_downscale() -> None:
    bgr = np.zeros((4, 8, 3), np.uint8)
    bgr[..., 0] = 10
    assert tuple(to_rgb8(bgr)[0, 0]) == (0, 0, 10)
    assert tuple(to_rgb8(bgr, bgr=False)[0, 0]) == (10, 0, 0)
    big = np.zeros((300, 1000, 3), np.uint8)
    assert downscale_to(big, 500).shape == (150, 500, 3)
    assert downscale_to(big, 1000) is big


# -- sources ----------------------------------------------------------------------------


def make_folder(root: Path) -> Path:
    folder = root / "pics"
    folder.mkdir()
    for name, value in [("img2.jpg", 20), ("img10.png", 100), ("img1.png", 10)]:
        write(folder / name, np.full((8, 8, 3), value, np.uint8))
    (folder / "img3.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (folder / "readme.txt").write_text("ignored: not an image extension")
    return folder


def test_folder_steps_wraps_and_skips_unreadable(tmp_path: Path) -> None:
    source = FolderSource(make_folder(tmp_path))
    source.open()
    assert source.count == 4  # natural order: img1, img2, img3 (corrupt), img10
    first = source.read()
    assert first is not None and first[0, 0, 0] == 10 and source.label == "img1.png"
    assert source.read() is None  # still: nothing new until stepped
    source.step(1)
    assert source.label == "img2.jpg"
    source.step(1)  # img3 is corrupt: skipped, remembered, dropped from the rotation
    assert source.label == "img10.png"
    assert source.last_error and "img3.jpg" in source.last_error
    assert source.count == 3 and source.position == 2
    frame = source.read()
    assert frame is not None and frame[0, 0, 0] == 100
    source.step(1)  # wraps to the start
    assert source.label == "img1.png" and source.position == 0
    source.step(-1)  # and back round to the end
    assert source.label == "img10.png"
    source.close()


def test_folder_backwards_over_an_unreadable_file(tmp_path: Path) -> None:
    source = FolderSource(make_folder(tmp_path))
    source.open()
    source.step(-1)
    assert source.label == "img10.png"
    source.step(-1)  # img3 is skipped going backwards too
    assert source.label == "img2.jpg"
    assert source.count == 3


def test_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no pictures here")
    with pytest.raises(SourceError, match="no images"):
        FolderSource(tmp_path).open()
    (tmp_path / "bad.jpg").write_bytes(b"junk")
    with pytest.raises(SourceError, match="none of its 1 images"):
        FolderSource(tmp_path).open()


def test_video_loops_past_its_end() -> None:
    source = VideoSource(VIDEO, loop=True)
    source.open()
    assert source.fps == pytest.approx(15.0)
    shapes = set()
    for _ in range(170):  # the sample has 150 frames
        frame = source.read()
        assert frame is not None
        shapes.add(frame.shape)
    assert source.loops == 1 and source.position == 19
    assert shapes == {(240, 320, 3)}
    source.close()
    assert not source.is_open


def test_video_without_loop_ends_and_paces_itself() -> None:
    source = VideoSource(VIDEO, loop=False)
    source.open()
    source.read()
    due = source.next_frame_due
    assert due > time.perf_counter() - 0.01
    source.read()
    assert source.next_frame_due == pytest.approx(due + 1 / 15)
    frames = 2
    while source.read() is not None:
        frames += 1
    assert frames == 150 and source.ended
    source.close()


def test_open_source_picks_the_kind(tmp_path: Path) -> None:
    settings = SourceSettings()
    assert isinstance(open_source(str(SAMPLES[0]), settings), ImageSource)
    assert isinstance(open_source(str(make_folder(tmp_path)), settings), FolderSource)
    video = open_source(str(VIDEO), settings)
    assert isinstance(video, VideoSource) and video.is_open
    video.close()


def test_open_source_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SourceError, match="not an image, video or folder"):
        open_source(str(text), SourceSettings())
    with pytest.raises(SourceError, match="no such file or folder"):
        open_source(str(tmp_path / "nope.mp4"), SourceSettings())
    with pytest.raises(SourceError, match="empty file"):
        open_source(str(corrupt_files(tmp_path)["empty"]), SourceSettings())


def test_missing_camera_is_a_clear_error() -> None:
    with pytest.raises(SourceError) as info:
        open_source("camera:7", SourceSettings())
    assert str(info.value) == "no camera at index 7"


# -- the capture thread -----------------------------------------------------------------


class FakeCamera(Source):
    """A live source that yields numbered frames, dies after `fail_after`, comes back later."""

    kind = "camera"
    is_live = True

    def __init__(self, fail_after: int | None = None, failed_opens: int = 0,
                 frame_interval_s: float = 0.002) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.failed_opens = failed_opens  # opens that fail after the camera is lost
        self.frame_interval_s = frame_interval_s
        self.opened = False
        self.lost = False
        self.open_calls = 0
        self.close_calls = 0
        self.frames = 0
        self._due = 0.0

    @property
    def label(self) -> str:
        return "camera 0"

    @property
    def is_open(self) -> bool:
        return self.opened

    @property
    def next_frame_due(self) -> float:
        return self._due

    def open(self) -> None:
        self.open_calls += 1
        if self.lost and self.failed_opens > 0:
            self.failed_opens -= 1
            raise SourceError("no camera at index 0")
        self.opened = True
        self.lost = False

    def read(self) -> np.ndarray | None:
        if not self.opened:
            raise SourceError("camera 0 is not open")
        if self.fail_after is not None and self.frames == self.fail_after:
            self.fail_after = None
            self.lost = True
            raise SourceError("camera 0 lost")
        self.frames += 1
        # A real camera blocks until its next frame; this one says when that is due, and
        # the capture thread waits for it in its own wait, which `stop()` interrupts.
        self._due = time.perf_counter() + self.frame_interval_s
        image = np.zeros((4, 6, 3), np.uint8)
        image[:, 0] = 255  # left column white: shows mirroring
        image[0, 1] = self.frames % 256
        return image

    def close(self) -> None:
        self.close_calls += 1
        self.opened = False


class CountedImage(ImageSource):
    """A still image that counts the capture thread's reads of it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = 0

    def read(self) -> np.ndarray | None:
        self.reads += 1
        return super().read()


def read_again(thread: CaptureThread, source: CountedImage) -> None:
    """Return once the thread has read `source` afresh and has dealt with what it got.

    A read that begins after this call has been dealt with once the read after it has begun.
    Each check wakes the idle thread (unpausing a running thread does nothing else), so no
    idle wait is sat out.
    """
    began = source.reads

    def two_more_reads() -> bool:
        thread.set_paused(False)
        return source.reads >= began + 2

    assert wait_until(two_more_reads)


# Far longer than any stop needs, far shorter than the waits a stop must interrupt.
STOP_TIMEOUT_S = 10.0
LONG_WAIT_S = 3600.0


def start(source: Source, **settings: object) -> tuple[CaptureThread, LatestSlot[Frame], list]:
    slot: LatestSlot[Frame] = LatestSlot()
    notices: list[tuple[str, str]] = []
    thread = CaptureThread(
        source,
        slot,
        SourceSettings(**settings),  # type: ignore[arg-type]
        on_notice=lambda text, level: notices.append((text, level)),
    )
    thread.start()
    return thread, slot, notices


def test_still_image_is_put_once_until_stepped() -> None:
    source = CountedImage(SAMPLES[0])
    thread, slot, _ = start(source)
    try:
        assert wait_until(lambda: slot.peek() is not None)
        read_again(thread, source)
        assert slot.take() is not None and slot.dropped == 0
        read_again(thread, source)
        assert slot.take() is None and thread.frames_read == 1
        thread.step(1)  # a single image "steps" to itself
        assert wait_until(lambda: slot.peek() is not None)
        frame = slot.take()
        assert frame is not None and frame.source == SAMPLES[0].name
        assert thread.frames_read == 2
        thread.resend()
        assert wait_until(lambda: slot.take() is not None)
        read_again(thread, source)
        assert thread.frames_read == 3 and slot.dropped == 0
    finally:
        assert thread.stop()
    assert not source.is_open


def test_folder_step_through_the_thread(tmp_path: Path) -> None:
    thread, slot, notices = start(FolderSource(make_folder(tmp_path)))
    try:
        assert wait_until(lambda: slot.peek() is not None)
        assert slot.take().index == 0  # type: ignore[union-attr]
        thread.step(1)
        thread.step(1)  # two quick steps may land as one: either way we end on img10
        assert wait_until(lambda: thread.position == 2)
        assert wait_until(lambda: slot.peek() is not None)
        frame = slot.take()
        assert frame is not None and frame.index == 2 and frame.source == "img10.png"
        assert any("img3.jpg" in text and level == "warning" for text, level in notices)
    finally:
        assert thread.stop()


def test_camera_frames_are_mirrored_and_downscaled() -> None:
    camera = FakeCamera()
    thread, slot, _ = start(camera, mirror=True, max_frame_side=3)
    try:
        assert wait_until(lambda: slot.peek() is not None)
        frame = slot.take()
        assert frame is not None and frame.image.shape == (2, 3, 3)
        assert frame.image[:, -1].min() > 100  # the white column is now on the right
        thread.set_mirror(False)
        assert wait_until(lambda: (f := slot.take()) is not None and f.image[:, 0].min() > 100)
    finally:
        assert thread.stop()


def test_camera_lost_then_reconnected() -> None:
    camera = FakeCamera(fail_after=5, failed_opens=2)
    thread, slot, notices = start(camera, reconnect_interval_s=0.02)
    try:
        assert wait_until(lambda: ("camera 0 reconnected", "info") in notices)
        assert notices[0] == ("camera 0 lost — retrying", "warning")
        assert [text for text, _ in notices].count("camera 0 lost — retrying") == 1
        assert camera.open_calls == 1 + 3  # first open, two failures, success
        assert thread.reconnects == 1
        slot.take()
        assert wait_until(lambda: slot.peek() is not None)  # frames flow again
        assert wait_until(lambda: thread.frames_read > 10)
    finally:
        assert thread.stop()


def test_stop_is_prompt_and_always_closes() -> None:
    camera = FakeCamera(frame_interval_s=LONG_WAIT_S)
    thread, slot, _ = start(camera)
    assert wait_until(lambda: slot.peek() is not None)
    assert thread.stop(timeout=STOP_TIMEOUT_S)  # it waits for the next frame no longer
    assert not thread.is_alive()
    assert not camera.is_open and camera.close_calls >= 1


def test_stop_while_reconnecting() -> None:
    camera = FakeCamera(fail_after=1, failed_opens=10**6)
    thread, _, notices = start(camera, reconnect_interval_s=LONG_WAIT_S)
    assert wait_until(lambda: bool(notices))  # lost: it waits to reopen
    assert thread.stop(timeout=STOP_TIMEOUT_S)
    assert not thread.is_alive() and not camera.is_open


def test_stop_while_idle_on_a_still_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture_thread, "_IDLE_S", LONG_WAIT_S)
    source = CountedImage(SAMPLES[0])
    thread, slot, _ = start(source)
    assert wait_until(lambda: slot.peek() is not None)
    assert wait_until(lambda: source.reads >= 2)  # nothing new: it goes idle
    assert thread.stop(timeout=STOP_TIMEOUT_S)
    assert not source.is_open


def test_video_plays_at_its_own_speed() -> None:
    source = VideoSource(VIDEO)
    thread, slot, _ = start(source)
    frames: list[Frame] = []

    def a_second_of_frames() -> bool:
        frame = slot.take()
        if frame is not None:
            frames.append(frame)
        return bool(frames) and frames[-1].index - frames[0].index >= 15

    try:
        assert wait_until(a_second_of_frames, timeout=STOP_TIMEOUT_S)
    finally:
        assert thread.stop()
    # 15 frames/s by the frames' own capture times (not hundreds: it must not race through
    # the file); frames the slot dropped between two takes still count by their index.
    first, last = frames[0], frames[-1]
    rate = (last.index - first.index) / (last.timestamp - first.timestamp)
    assert 10 <= rate <= 20, rate


def test_failed_first_open_is_reported_and_ends_the_thread(tmp_path: Path) -> None:
    thread, _, notices = start(ImageSource(tmp_path / "gone.jpg"))
    thread.join(2.0)
    assert not thread.is_alive()
    assert notices and notices[0][1] == "error" and "gone.jpg" in notices[0][0]


def test_no_thread_left_behind() -> None:
    names = [t.name for t in threading.enumerate() if t.name.startswith("capture ")]
    assert names == []


class FakeVideoFile(FakeCamera):
    """A file source (not a camera): once its reads fail, reopening fails too."""

    kind = "video"


def test_a_file_source_whose_reads_fail_ends_in_failure_not_a_wait() -> None:
    source = FakeVideoFile(fail_after=3, failed_opens=10**6)
    slot: LatestSlot[Frame] = LatestSlot()
    failures: list[str] = []
    notices: list[tuple[str, str]] = []
    # a camera would be retried every hour here: a file must not be waited for
    thread = CaptureThread(source, slot, SourceSettings(reconnect_interval_s=LONG_WAIT_S),
                           on_notice=lambda text, level: notices.append((text, level)),
                           on_failed=failures.append)
    thread.start()
    thread.join(STOP_TIMEOUT_S)
    assert not thread.is_alive()
    assert failures == ["no camera at index 0"]  # the reopen's error (FakeCamera's wording)
    assert not any("retrying" in text for text, _ in notices)
    assert not source.is_open


def test_a_failed_first_open_goes_to_the_failure_listener(tmp_path: Path) -> None:
    failures: list[str] = []
    thread = CaptureThread(ImageSource(tmp_path / "gone.jpg"), LatestSlot(),
                           on_failed=failures.append)
    thread.start()
    thread.join(STOP_TIMEOUT_S)
    assert not thread.is_alive()
    assert len(failures) == 1 and "gone.jpg" in failures[0]


def test_a_folder_whose_every_file_turns_unreadable_ends_in_failure(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        write(folder / name, np.full((8, 8, 3), 200, np.uint8))
    failures: list[str] = []
    slot: LatestSlot[Frame] = LatestSlot()
    thread = CaptureThread(FolderSource(folder), slot,
                           SourceSettings(reconnect_interval_s=LONG_WAIT_S),
                           on_failed=failures.append)
    thread.start()
    try:
        assert wait_until(lambda: slot.take() is not None)
        for name in ("a.png", "b.png"):
            (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n no longer a picture")
        thread.step(1)
        thread.join(STOP_TIMEOUT_S)
        assert not thread.is_alive()
        assert len(failures) == 1 and "none of its 2 images could be read" in failures[0]
    finally:
        thread.stop()
