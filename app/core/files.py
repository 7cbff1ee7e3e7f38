"""Files on disk as the analyses see them: safe names, image listings, fingerprints.

One place each, because caches depend on them: two spellings of a layer's folder name, or
two orders of a dataset's files, would silently split or mismatch cached results.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
)
_SAFE = frozenset("-_.")


def safe_filename(text: str) -> str:
    """`text` as one file-name component: letters, digits, `-_.` kept, the rest `@`.

    `@` never occurs in a module's dotted name, so `conv:1` (a module's second call)
    cannot collide with a module named `conv_1`.
    """
    return "".join(ch if ch.isalnum() or ch in _SAFE else "@" for ch in text) or "@"


def is_image_path(path: str | Path) -> bool:
    """True when the file name ends in one of `IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(root: str | Path) -> list[str]:
    """Image files under `root`, recursively, as absolute POSIX paths in string order.

    Hidden files and folders are left out; a single image file lists itself.
    """
    base = Path(root).expanduser()
    if base.is_file():
        return [Path(os.path.abspath(base)).as_posix()] if is_image_path(base) else []
    found = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(os.path.abspath(os.path.join(dirpath, f))).as_posix()
                  for f in filenames if is_image_path(f) and not f.startswith(".")]
    return sorted(found)


def files_fingerprint(paths: Iterable[str | Path], *extra: object) -> str:
    """Names an exact list of files (paths, sizes, modification times) and `extra` values."""
    h = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    for value in extra:
        h.update(repr(value).encode())
    return h.hexdigest()[:16]
