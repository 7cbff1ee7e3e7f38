"""What every pass over an image folder shares (the scan, both passes of a dissection).

A pass is a job that decodes files in DataLoader worker processes, runs the network on the
batches in the main process, and checkpoints its state every few batches so that a killed
or cancelled run resumes. The pieces here are the ones each analysis used to copy:

* `PassProgress` and `Meter`: one progress record per batch, with a rate and an ETA, and
  where a resumed run started (`resumed_from`, so a bar can say it resumed).
* `make_loader` and `batches`: the DataLoader and its iteration, which shuts the workers
  down when the pass ends, fails or is closed (a cancel).
* `save_checkpoint` / `load_checkpoint`: a JSON document and numpy arrays written atomically
  as two files tied by a random token, so a kill between the two writes leaves a pair that
  does not match, read as "no checkpoint", never as a mix of two states.

Worker processes die with the pass. A SIGKILL of the main process runs none of its
clean-up, and a worker blocked at exit on a full result pipe (its feeder thread) would
otherwise live on for good, reparented to init, with the memory of its decoder. Each
worker therefore (1) asks Linux for SIGKILL when its parent dies (prctl
PR_SET_PDEATHSIG; the parent is the main process under fork and spawn, the forkserver's
server under forkserver, which itself exits when the main process's end of its pipe
closes) and (2) runs a watch thread that ends the worker when its parent changes or the
main process is gone, which also covers other systems and the moment before the prctl.
The decoders' own warnings (OpenCV's "can't read", libpng's chunk complaints) are silenced
in the workers and for an in-process pass: a bad file is reported once, as a skipped file
with its reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2.utils.logging as cv_log
import numpy as np
from torch.utils.data import DataLoader, Dataset

from app.core.atomic import atomic_write_json, atomic_write_npz
from app.core.files import list_images
from app.core.jobs import Progress, clock
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.recorder import discover_layers

WATCH_INTERVAL_S = 0.5  # how soon an orphaned worker notices
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True, kw_only=True)
class PassProgress(Progress):
    """One per batch of a pass; `stage` names the pass ("scan", "crops", "thresholds",
    "tally"); `resumed_from` is how many items an earlier, interrupted run had done."""

    stage: str
    skipped: int
    images_per_s: float
    eta_s: float
    resumed_from: int = 0

    def line(self) -> str:
        """`scan       1234/5000  52.1 img/s  ETA 1:12  (3 skipped)` for a text bar."""
        eta = "--:--" if not math.isfinite(self.eta_s) else clock(self.eta_s)
        text = (f"{self.stage:10s} {self.done}/{self.total}  {self.images_per_s:.1f} img/s  "
                f"ETA {eta}")
        if self.resumed_from:
            text += f"  (resumed at {self.resumed_from})"
        return text + (f"  ({self.skipped} skipped)" if self.skipped else "")


class Meter:
    """Counts a pass's items and turns them into `PassProgress` with a rate and an ETA; the
    rate counts only what this run did, not what a resumed checkpoint brought."""

    def __init__(self, total: int, done: int, resumed_from: int = 0) -> None:
        self.total, self.done, self.start_done = total, done, done
        self.resumed_from = resumed_from
        self.t0 = time.perf_counter()

    def update(self, stage: str, n: int, skipped: int) -> PassProgress:
        self.done += n
        dt = time.perf_counter() - self.t0
        rate = (self.done - self.start_done) / dt if dt > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else math.inf
        return PassProgress(done=self.done, total=self.total, stage=stage, skipped=skipped,
                            images_per_s=rate, eta_s=eta, resumed_from=self.resumed_from)


# -- the loader ----------------------------------------------------------------------------------


def make_loader(ds: Dataset, batch_size: int | None, workers: int, collate: Callable,
                mp_context: str | None = None) -> DataLoader:
    """`ds` in order, decoded by `workers` processes (0: in this one) that die with it."""
    init = functools.partial(_worker_started, os.getpid()) if workers else None
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=collate, prefetch_factor=2 if workers else None,
                      persistent_workers=False, worker_init_fn=init,
                      multiprocessing_context=mp_context if workers else None)


def batches(loader: DataLoader) -> Generator[Any, None, None]:
    """Iterate `loader`; its worker processes are shut down however the iteration ends."""
    it = iter(loader)
    try:
        with quiet_decoders():
            yield from it
    finally:
        del it  # shuts the worker processes down (a generator closed by a cancel included)


@contextlib.contextmanager
def quiet_decoders() -> Iterator[None]:
    """OpenCV's log silenced while a pass decodes in this process; restored after."""
    before = cv_log.getLogLevel()
    cv_log.setLogLevel(cv_log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv_log.setLogLevel(before)


def _worker_started(main_pid: int, worker_id: int) -> None:
    """DataLoader's worker_init_fn: silence the decoders, die with the parent."""
    cv_log.setLogLevel(cv_log.LOG_LEVEL_SILENT)
    die_with_parent(main_pid)


def die_with_parent(main_pid: int) -> None:
    """End this process (SIGKILL, or `os._exit` from a watch thread) when its parent dies
    or `main_pid` is gone; see the module doc."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)

    def orphaned() -> bool:
        return os.getppid() != parent or not process_alive(main_pid)

    if orphaned():  # the parent died before the prctl took effect
        os._exit(1)

    def watch() -> None:
        while not orphaned():
            time.sleep(WATCH_INTERVAL_S)
        os._exit(1)  # no clean-up: the pipes it would flush have no reader any more

    threading.Thread(target=watch, name="deepvis-orphan-watch", daemon=True).start()


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, killed but not yet reaped, counts as gone)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process, or no way to tell
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # not Linux (or gone this instant; the next look tells)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


# -- checkpoints ---------------------------------------------------------------------------------


def save_checkpoint(folder: Path, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """`doc` (JSON) and `arrays` in `folder`, tied by a fresh token (see the module doc)."""
    token = os.urandom(8).hex()
    atomic_write_npz(folder / "state.npz", {"token": np.array(token), **arrays})
    atomic_write_json(folder / "state.json", {**doc, "token": token})


def load_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """(doc, arrays) of `save_checkpoint`, or None if there is none or the pair is torn."""
    try:
        doc = json.loads((folder / "state.json").read_text())
        with np.load(folder / "state.npz") as z:
            if str(z["token"]) != doc["token"]:
                return None
            return doc, {k: z[k] for k in z.files if k != "token"}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def folder_images(dataset: str | Path, error: type[Exception]) -> tuple[Path, list[str]]:
    """The folder and the images under it (recursively, `list_images`' order); `error` with
    one line for the user when the folder is missing or holds no image."""
    root = Path(dataset).expanduser()
    if not root.exists():
        raise error(f"dataset not found: {root}")
    files = list_images(root)
    if not files:
        raise error(f"no images under {root} (looked for jpg, jpeg, png, webp, bmp, tif, tiff)")
    return root, files


def layer_map_shape(loaded: LoadedModel, layer: str, error: type[Exception]
                    ) -> tuple[tuple[int, ...], set[str]]:
    """`layer`'s (C, H, W) output shape, and the layers the recorder must clone (what
    `discover_layers` says); `error` with one line naming a few layers when it has none."""
    infos, clone = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    shapes = {i.name: i.shape for i in infos}
    if layer not in shapes:
        sample = ", ".join(list(shapes)[:6])
        raise error(f"no layer named {layer!r} with a (C, H, W) output in {loaded.name} "
                    f"(e.g. {sample}; see `deepvis layers`)")
    return shapes[layer], clone
