"""Writes that never leave a half-written file: write a temp file beside it, then rename."""

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
