"""glibc malloc tuning: large freed blocks stay on the heap for the next step to reuse."""

from __future__ import annotations

import ctypes
import sys

import pytest

from app.core import malloc_tuning


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc() -> ctypes.CDLL | None:
    libc = malloc_tuning._libc()
    return libc if libc is not None and hasattr(libc, "mallinfo2") else None


def test_user_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert malloc_tuning.keep_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux") or _glibc() is None,
                    reason="glibc's malloc only")
def test_large_blocks_come_from_the_heap_after_tuning(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in malloc_tuning._USER_KEYS:
        monkeypatch.delenv(key, raising=False)
    libc = _glibc()
    assert libc is not None
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    assert malloc_tuning.keep_freed_memory() is True
    size = 16 << 20  # above glibc's default mmap threshold, below ours
    mapped_before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    assert block
    try:
        assert libc.mallinfo2().hblkhd - mapped_before < size  # not a fresh mmap
    finally:
        libc.free(block)
    # and once freed it stays with the heap, ready for the next step's tensor
    assert libc.mallinfo2().fordblks >= size
