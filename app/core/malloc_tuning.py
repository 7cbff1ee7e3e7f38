"""Ask glibc's malloc to keep freed tensor memory for reuse instead of handing it back.

PyTorch allocates CPU tensors with plain malloc. glibc serves large blocks with mmap (above a
threshold that starts at 128 KiB) and returns them to the kernel on free, and it trims the
top of the heap once more than 128 KiB there is free. A forward+backward pass allocates and
frees the same multi-megabyte activation buffers every step, so every step pays for the
kernel to map and zero fresh pages: in a profile of gradient ascent on the CPU this shows up
as `fill_`/`copy_`/`constant_pad_nd` costing several times their arithmetic. With blocks up to
32 MiB kept on the heap and up to 256 MiB of free heap kept mapped, a 224-px render step of
EfficientNet-Lite0 went from ≈20 ms to ≈15 ms on the 2-vCPU dev box (docs/benchmarks.md).

The cost is resident memory: up to `trim_threshold` of freed memory stays mapped, per malloc
arena (glibc gives threads arenas of their own: the worker's and each job's). Environment
settings a user made (`MALLOC_*_`, `GLIBC_TUNABLES`) win: nothing is changed then. On systems
without glibc's `mallopt` (macOS, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for this parameter on 64-bit systems
TRIM_THRESHOLD = 256 << 20
_USER_KEYS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD,
                      trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Apply the thresholds above; → True if glibc accepted both (False: nothing to do)."""
    if any(key in os.environ for key in _USER_KEYS):
        return False
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 for a value glibc rejects (it then keeps its default)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
                and libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))
