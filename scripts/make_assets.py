"""Write the bundled sample photos and the sample video from photos shipped offline.

    python scripts/make_assets.py [--out assets]

Photos come from scikit-image's bundled data and matplotlib's sample data (no download);
see assets/README.md for their licences. The video is a slow pan-and-zoom ("Ken Burns")
over the same photos with crossfades, so the live view has something moving to look at on
a machine without a camera. It loops seamlessly: the last photo fades into the first.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MAX_SIDE = 640
JPEG_QUALITY = 88
VIDEO_SIZE = (320, 240)  # (width, height)
VIDEO_FPS = 15
SEGMENT_S = 2.6  # each photo's time on screen, crossfades included
FADE_S = 0.6


@dataclass(frozen=True)
class Shot:
    """One photo's camera move: the view's centre (fractions of the photo) and zoom."""

    name: str
    load: Callable[[], np.ndarray]  # RGB uint8
    start: tuple[float, float, float]  # (cx, cy, zoom); zoom 1 = largest 4:3 view
    end: tuple[float, float, float]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return np.asarray(getattr(skimage.data, name)())[:, :, :3]

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    bgr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


SHOTS = (
    Shot("chelsea", _skimage("chelsea"), (0.50, 0.50, 1.0), (0.45, 0.40, 1.5)),
    Shot("coffee", _skimage("coffee"), (0.40, 0.55, 1.4), (0.55, 0.50, 1.05)),
    Shot("astronaut", _skimage("astronaut"), (0.50, 0.50, 1.0), (0.45, 0.35, 1.6)),
    Shot("rocket", _skimage("rocket"), (0.35, 0.55, 1.3), (0.55, 0.45, 1.0)),
    Shot("grace_hopper", _grace_hopper, (0.50, 0.30, 1.0), (0.50, 0.30, 1.45)),
)


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    h, w = rgb.shape[:2]
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        rgb = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise RuntimeError(f"cannot encode {path}")
    data.tofile(path)


def view(photo: np.ndarray, shot: Shot, t: float) -> np.ndarray:
    """The shot's view at progress t ∈ [0, 1], as BGR uint8 of VIDEO_SIZE."""
    out_w, out_h = VIDEO_SIZE
    h, w = photo.shape[:2]
    ease = 0.5 - 0.5 * math.cos(math.pi * t)  # slow in, slow out
    cx, cy, zoom = (a + (b - a) * ease for a, b in zip(shot.start, shot.end, strict=True))
    # Largest box of the output's aspect that fits the photo, shrunk by the zoom.
    base_w = min(w, h * out_w / out_h)
    box_w, box_h = base_w / zoom, base_w / zoom * out_h / out_w
    x0 = min(max(cx * w - box_w / 2, 0.0), w - box_w)
    y0 = min(max(cy * h - box_h / 2, 0.0), h - box_h)
    # Sub-pixel affine resampling keeps slow moves smooth (integer crops would judder).
    m = np.array([[box_w / out_w, 0, x0], [0, box_h / out_h, y0]], np.float64)
    rgb = cv2.warpAffine(
        photo,
        m,
        VIDEO_SIZE,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def for_video(photo: np.ndarray) -> np.ndarray:
    """Shrink a photo so its widest view is 1.5× the video width.

    warpAffine has no area filter; from this size the bilinear filter only ever shrinks a
    little (zoom 1) or magnifies, so fine textures do not shimmer.
    """
    out_w, out_h = VIDEO_SIZE
    h, w = photo.shape[:2]
    base_w = min(w, h * out_w / out_h)
    scale = 1.5 * out_w / base_w
    if scale >= 1:
        return photo
    size = (round(w * scale), round(h * scale))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA)


def write_video(path: Path, photos: list[np.ndarray]) -> int:
    """Write the looping pan-and-zoom; returns the number of frames."""
    photos = [for_video(p) for p in photos]
    n = len(photos)
    stride = SEGMENT_S - FADE_S  # a new photo starts every `stride` seconds
    frames = round(n * stride * VIDEO_FPS)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), VIDEO_FPS, VIDEO_SIZE)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path} with the mp4v codec")
    try:
        for k in range(frames):
            now = k / VIDEO_FPS
            i = int(now // stride) % n
            local = now - (now // stride) * stride  # time since photo i started
            frame = view(photos[i], SHOTS[i], local / SEGMENT_S).astype(np.float32)
            if local < FADE_S:
                # The previous photo is still fading out (for photo 0: the last one, so the
                # video loops without a cut).
                j = (i - 1) % n
                prev = view(photos[j], SHOTS[j], (local + stride) / SEGMENT_S)
                a = local / FADE_S
                frame = frame * a + prev.astype(np.float32) * (1 - a)
            writer.write(np.rint(frame).astype(np.uint8))
    finally:
        writer.release()
    return frames


def check_video(path: Path, expected: int) -> None:
    cap = cv2.VideoCapture(str(path))
    count = 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        count += 1
    cap.release()
    if count != expected:
        raise RuntimeError(f"{path}: wrote {expected} frames, OpenCV reads back {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "assets")
    args = parser.parse_args()
    samples = args.out / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    photos = []
    for shot in SHOTS:
        photo = np.ascontiguousarray(shot.load())
        photos.append(photo)
        write_jpeg(samples / f"{shot.name}.jpg", photo)
    # the video ships inside the package (a wheel install plays it when there is no camera)
    video = args.out.parent / "app" / "assets" / "sample.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    frames = write_video(video, photos)
    check_video(video, frames)
    for p in sorted([*samples.glob("*.jpg"), video]):
        print(f"{p}  {p.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
