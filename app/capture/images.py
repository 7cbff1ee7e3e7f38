"""Decode any still image a user may drop on the window into RGB uint8, or say why not.

OpenCV decodes from bytes (`np.fromfile` + `cv2.imdecode`) because `cv2.imread` cannot
open non-ASCII paths on Windows. Everything that is not 8-bit RGB (16-bit, float, gray,
alpha, palette) is converted here, so the rest of the app only ever sees (H, W, 3) uint8.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from app.core.files import IMAGE_EXTENSIONS, is_image_path

__all__ = ["IMAGE_EXTENSIONS", "ImageError", "is_image_path", "read_image"]


_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageError(ValueError):
    """An image file that cannot be shown; the one-line message names the file."""


def read_image(path: str | Path, max_pixels: int = 80_000_000) -> np.ndarray:
    """Read an image file as RGB uint8, (H, W, 3); raises ImageError naming the file."""
    p = Path(path)
    name = str(p)
    if not p.exists():
        raise ImageError(f"{name}: no such file")
    if p.is_dir():
        raise ImageError(f"{name}: is a folder, not an image")
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if data.size == 0:
        raise ImageError(f"{name}: empty file")
    head = data[:64].tobytes()

    # A header that promises a huge image is refused before the decoder allocates it.
    size = _header_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError(_too_big(name, size[0], size[1], max_pixels))
    if head.startswith(_JPEG_MAGIC) and not _jpeg_complete(data):
        # libjpeg pads a truncated file with grey and only warns; showing half a picture
        # as if it were the whole one misleads, so say what happened instead.
        raise ImageError(f"{name}: truncated JPEG (no end-of-image marker)")

    if head.startswith(_PNG_MAGIC):
        data = _without_colour_profile(data)

    # JPEG has no alpha or deep colour worth keeping, and IMREAD_COLOR applies the EXIF
    # orientation that IMREAD_UNCHANGED ignores (phone photos would appear rotated).
    flags = cv2.IMREAD_COLOR if head.startswith(_JPEG_MAGIC) else cv2.IMREAD_UNCHANGED
    try:
        decoded = cv2.imdecode(data, flags)
    except cv2.error as exc:
        raise ImageError(f"{name}: cannot decode: {_one_line(str(exc))}") from None
    if decoded is None or decoded.size == 0:
        raise ImageError(f"{name}: not an image, or a corrupt one")
    h, w = decoded.shape[:2]
    if h * w > max_pixels:
        raise ImageError(_too_big(name, w, h, max_pixels))
    try:
        return to_rgb8(decoded)
    except ValueError as exc:
        raise ImageError(f"{name}: {exc}") from None


def to_rgb8(array: np.ndarray, *, bgr: bool = True) -> np.ndarray:
    """Any decoded image array, (H, W) or (H, W, C) in OpenCV's channel order → RGB uint8.

    Gray is replicated, alpha is composited on white, >4 channels keep the first three.
    `bgr=False` for arrays that are already RGB(A).
    """
    img = np.asarray(array)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"unsupported image shape {img.shape}")
    img = _to_uint8(img)
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    channels = img.shape[2]
    if channels == 2:  # gray + alpha
        gray = _over_white(img[:, :, :1], img[:, :, 1])
        return np.ascontiguousarray(np.repeat(gray, 3, axis=2))
    color = _over_white(img[:, :, :3], img[:, :, 3]) if channels == 4 else img[:, :, :3]
    if bgr:
        return cv2.cvtColor(np.ascontiguousarray(color), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(color)


def downscale_to(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink (H, W, C) so its longest side is at most `max_side`; smaller images unchanged."""
    h, w = image.shape[:2]
    longest = max(h, w)
    if max_side <= 0 or longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # INTER_AREA averages the source pixels: no aliasing on big reductions.
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        # 65535 / 257 == 255 exactly, so full scale maps to full scale.
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * 255
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        scaled = np.clip(img.astype(np.float64), 0, info.max) * (255.0 / info.max)
        return np.rint(scaled).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        f = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(f.max()) if f.size else 1.0
        # Float images are conventionally 0..1; anything brighter is scaled by its maximum
        # rather than clipped to white.
        scale = 255.0 if top <= 1.0 else 255.0 / top
        return np.rint(np.clip(f * scale, 0, 255)).astype(np.uint8)
    raise ValueError(f"unsupported pixel type {img.dtype}")


def _over_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[:, :, None] / 255.0
    out = color.astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.rint(out).astype(np.uint8)


def _jpeg_complete(data: np.ndarray) -> bool:
    # Entropy-coded data stuffs every 0xFF with 0x00, so an end-of-image marker after the
    # last start-of-scan can only be the real end (trailing bytes after it are allowed).
    raw = data.tobytes()
    sos = raw.rfind(b"\xff\xda")
    return sos >= 0 and raw.find(b"\xff\xd9", sos) >= 0


def _header_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) read from a PNG, BMP or JPEG header, or None where unknown."""
    head = data[:32].tobytes()
    if head.startswith(_PNG_MAGIC) and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return w, h
    if head.startswith(b"BM") and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    if head.startswith(_JPEG_MAGIC):
        return _jpeg_size(data[: 1 << 20].tobytes())
    return None


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    # Walk the marker segments up to the first start-of-frame (SOF0..SOF15 except
    # DHT/JPG/DAC), which holds the size; give up quietly on anything odd.
    i = 2
    while i + 9 < len(raw):
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:
            i += 2
            continue
        (length,) = struct.unpack(">H", raw[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", raw[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def _without_colour_profile(data: np.ndarray) -> np.ndarray:
    """The PNG `data` without its iCCP chunk (found before the first IDAT, where it must be).

    OpenCV applies no colour profile, so the pixels are the same without it; but libpng
    complains of a bad one ("iCCP: known incorrect sRGB profile", common in files saved by
    old Photoshops) with a write to stderr that no log level or handler of OpenCV's reaches.
    """
    i, n = len(_PNG_MAGIC), data.size
    while i + 8 <= n:
        length, kind = struct.unpack(">I4s", data[i : i + 8].tobytes())
        end = i + 12 + length  # length, type, data, CRC
        if kind == b"iCCP":
            return np.concatenate([data[:i], data[end:]])
        if kind in (b"IDAT", b"IEND"):
            break
        i = end
    return data


def _too_big(name: str, w: int, h: int, max_pixels: int) -> str:
    return (
        f"{name}: image too large ({w}×{h} = {w * h / 1e6:.1f} MP, "
        f"limit {max_pixels / 1e6:.1f} MP: source.max_image_pixels)"
    )


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"
