"""Writes that never leave a half-written file: write a temp file beside it, then rename.

The cache's rule, for every analysis (scans, dissections, ablation curves, class units,
renders …): a result is stored through `cache_write` and its kin, which refuse an empty one
(`items`, what the result stands on, is 0: no image decoded, nothing tallied, no pixel
drawn) with `EmptyResult` before anything on disk is touched. So an empty or failed result
never replaces a good one: a failed run raises before it stores, an empty one is refused
here, and whatever the cache held before is what the window and the catalogue still show.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def _umask() -> int:
    """The process umask. Linux reports it in /proc; elsewhere the only way to read it is to
    set it and set it back, which is briefly wrong for other threads creating files."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(f)` on a temp file in `path`'s folder, fsync it, rename it over `path`.

    The result gets the permissions a plain `open(path, "w")` would give (the file's own if it
    existed, else 0o666 less the umask): mkstemp's private 0o600 would leave exported images
    unreadable to anyone else.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = target.stat().st_mode & 0o777  # never carry setuid/setgid over
    except OSError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        if hasattr(os, "fchmod"):  # POSIX; Windows files have no such bits to fix
            # best effort: a file system without modes (vfat, some mounts) refuses it
            with contextlib.suppress(OSError):
                os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """`arrays` as an uncompressed .npz at `path`, atomically."""
    def write(f: IO[bytes]) -> None:
        np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub reads ** as allow_pickle

    return atomic_write(path, write)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    def write(f: IO[bytes]) -> None:
        f.write(data)

    return atomic_write(path, write)


def atomic_write_json(path: str | Path, doc: Any) -> Path:
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


class EmptyResult(ValueError):
    """An analysis tried to store a result with nothing in it; the cache keeps what it had."""


def refuse_empty(items: int, what: str) -> None:
    """The cache's rule (see the module doc): EmptyResult unless `items` > 0."""
    if items <= 0:
        raise EmptyResult(f"{what}: empty result (nothing was read); not stored, "
                          "the cache keeps its earlier result")


def cache_write(path: str | Path, write: Callable[[IO[bytes]], None], *, items: int,
                what: str) -> Path:
    """`atomic_write` for a cached result: refused (nothing written) when it is empty."""
    refuse_empty(items, what)
    return atomic_write(path, write)


def cache_write_json(path: str | Path, doc: Any, *, items: int, what: str) -> Path:
    refuse_empty(items, what)
    return atomic_write_json(path, doc)


def cache_write_npz(path: str | Path, arrays: dict[str, np.ndarray], *, items: int,
                    what: str) -> Path:
    refuse_empty(items, what)
    return atomic_write_npz(path, arrays)
