"""Running one analysis on many processes under `torchrun`: the one place for the plumbing.

`torchrun --nproc-per-node N [--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT]
-m app scan …` starts the same command on every rank with RANK, WORLD_SIZE, LOCAL_RANK and
LOCAL_WORLD_SIZE set. `start()` joins them into one process group (gloo on CPUs, nccl on
GPUs, each rank on GPU LOCAL_RANK, or on its fair share of the host's CPU cores) and returns
the `Ranks` every job takes. Without torchrun `launched()` is False and nothing here runs:
the jobs' single-process paths are the code they always were.

How a job uses it (each analysis keeps its own merge, because only it knows its state):

- `agree(facts)` first, before anything is read from or written to the cache: every rank
  must have the same model weights, dataset listing and settings, else every rank raises
  `RanksDisagree` with one line naming the first difference, and nothing is written.
- The work is split deterministically and batch-aligned: `chunks`/`take` give a rank the
  batches rank, rank + N, rank + 2N, … of the single-process run. Every batch therefore has
  exactly the images it has in one process, so per-image results are bitwise those of one
  process (a different batch grouping can move a float's last bit on a real network).
- Partial states meet at sync points: `gather` (to rank 0), `all_gather`, `broadcast`,
  `sum` (all_reduce of integer tallies). A rank that failed calls `fail(exc)` at the sync
  point instead: every rank then raises `RankFailed` naming that rank and its message, so
  the job fails everywhere instead of hanging in a collective. A rank that died outright
  closes its sockets, which gloo reports at once; the process group's timeout
  (DEEPVIS_RANK_TIMEOUT_S, default one hour) bounds every other wait.
- Rank 0 writes the one result, atomically, as the single-process job does; every rank
  checkpoints its own part (scan, dissect; render caches each finished batch), so the same
  command resumes after a killed rank or job.
- `progress` turns each rank's steps into rank 0's view of the whole job: ranks publish
  their counts in the process group's store, rank 0 adds them up.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import torch
import torch.distributed as dist

from app.core.jobs import Progress

T = TypeVar("T")
P = TypeVar("P", bound=Progress)

TIMEOUT_ENV = "DEEPVIS_RANK_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 3600.0
_log = logging.getLogger(__name__)
_PUBLISH_EVERY_S = 1.0  # store writes per rank: a round trip each, so not every step


class RankFailed(RuntimeError):
    """Some rank failed (its number and message say which and why); the job stops everywhere."""


class RanksDisagree(RankFailed):
    """The ranks do not run the same job (weights, dataset or settings differ)."""


def launched() -> bool:
    """True in a process started by torchrun (or anything that sets its environment)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job, and the collectives the jobs meet at."""

    rank: int
    world: int
    local_rank: int
    local_world: int
    backend: str

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # -- the split --------------------------------------------------------------------------
    def chunks(self, n: int, size: int) -> list[range]:
        """This rank's batches of `n` items cut `size` at a time: rank, rank + N, …"""
        count = -(-n // size)
        return [range(j * size, min(n, (j + 1) * size))
                for j in range(self.rank, count, self.world)]

    def take(self, items: Sequence[T], size: int) -> list[T]:
        """This rank's items, in order: its batches of `items` laid end to end."""
        return [items[i] for part in self.chunks(len(items), size) for i in part]

    def positions(self, n: int, size: int) -> list[int]:
        """Indices (into the whole list) of this rank's items, in order."""
        return [i for part in self.chunks(n, size) for i in part]

    # -- agreeing on the job ----------------------------------------------------------------
    def agree(self, facts: dict[str, Any]) -> None:
        """RanksDisagree on every rank unless all ranks have the same `facts` (name → value)."""
        everyone = self._all_gather_raw(facts)
        mine = everyone[0]
        for r, theirs in enumerate(everyone[1:], start=1):
            for name in sorted(set(mine) | set(theirs)):
                a, b = mine.get(name), theirs.get(name)
                if a != b:
                    raise RanksDisagree(f"ranks disagree on the {name}: rank 0 has {a}, "
                                        f"rank {r} has {b}; nothing was written")

    # -- sync points: status first, so that one rank's failure stops them all ------------------
    def fail(self, exc: BaseException) -> NoReturn:
        """Tell the other ranks (waiting at this sync point) that this one failed; raises
        `RankFailed` here as there. The traceback goes to the log, the message to the user."""
        if isinstance(exc, RankFailed):  # already known everywhere: no collective left to meet
            raise exc
        _log.error("rank %d failed", self.rank, exc_info=exc)
        self._status(_one_line(exc))
        raise RankFailed(f"rank {self.rank} failed: {_one_line(exc)}")  # pragma: no cover

    def check(self) -> None:
        """A sync point without data: returns once every rank got here without failing."""
        self._status(None)

    def gather(self, part: T) -> list[T] | None:
        """Every rank's `part` (rank order) on rank 0, None on the others."""
        self._status(None)
        out: list[Any] | None = [None] * self.world if self.is_root else None
        self._call(lambda: dist.gather_object(part, out, dst=0))
        return out

    def all_gather(self, part: T) -> list[T]:
        """Every rank's `part`, in rank order, on every rank."""
        self._status(None)
        return self._all_gather_raw(part)

    def broadcast(self, obj: T | None) -> T:
        """Rank 0's `obj` on every rank (the others pass None)."""
        self._status(None)
        box = [obj]
        self._call(lambda: dist.broadcast_object_list(box, src=0))
        return box[0]  # type: ignore[return-value]  # rank 0 sent a T

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over ranks of an integer `tensor` (exact, any order)."""
        if tensor.is_floating_point():
            # float sums depend on the order of the ranks' partial sums: not one process's
            raise TypeError("only integer tallies are summed across ranks")
        self._status(None)
        on = _comm_device(self.backend)
        t = tensor.detach().to(on, copy=True)
        self._call(lambda: dist.all_reduce(t, op=dist.ReduceOp.SUM))
        return t.to(tensor.device)

    def _status(self, failure: str | None) -> None:
        statuses = self._all_gather_raw(failure)
        for r, message in enumerate(statuses):
            if message is not None:
                raise RankFailed(f"rank {r} failed: {message}")

    def _all_gather_raw(self, obj: T) -> list[T]:
        out: list[Any] = [None] * self.world
        self._call(lambda: dist.all_gather_object(out, obj))
        return out

    def _call(self, collective: Callable[[], object]) -> None:
        try:
            collective()
        except (RuntimeError, ConnectionError) as exc:  # gloo: a peer closed its sockets
            raise RankFailed(f"another rank stopped before the job finished "
                             f"({_one_line(exc)})") from None

    # -- progress of the whole job on rank 0 ------------------------------------------------
    def progress(self, show: Callable[[Progress], None] | None) -> Callable[[Progress], None]:
        """An `on_progress` for `run_job`: publishes this rank's steps; on rank 0 also calls
        `show` with the whole job's progress (its stage's counts summed over the ranks)."""
        return _WholeJob(self, show)


class _WholeJob:
    def __init__(self, ranks: Ranks, show: Callable[[Progress], None] | None) -> None:
        self.ranks, self.show = ranks, show
        self.store = _store()
        self.last = 0.0
        self.stage = ""
        self.others: dict[int, tuple[str, int, int, float]] = {}
        self.last_read = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        mine = (_stage(p), p.done, p.total, float(getattr(p, "images_per_s", 0.0)))
        changed = mine[0] != self.stage
        if self.store is not None and (now - self.last >= _PUBLISH_EVERY_S or p.finished
                                       or changed):
            self.last, self.stage = now, mine[0]
            try:
                self.store.set(f"deepvis/progress/{self.ranks.rank}", pickle.dumps(mine))
            except (RuntimeError, ConnectionError):  # progress is never worth failing a job
                self.store = None
        if not self.ranks.is_root or self.show is None:
            return
        if self.store is not None and now - self.last_read >= _PUBLISH_EVERY_S:
            self.last_read = now
            self._read_others()
        self.show(self._whole(p, mine))

    def _read_others(self) -> None:
        assert self.store is not None
        for r in range(1, self.ranks.world):
            key = f"deepvis/progress/{r}"
            try:
                if self.store.check([key]):
                    self.others[r] = pickle.loads(self.store.get(key))
            except (RuntimeError, ConnectionError):
                return

    def _whole(self, p: Progress, mine: tuple[str, int, int, float]) -> Progress:
        # ranks in another stage (not started yet, or done while rank 0 alone cuts crops)
        # are not part of this stage's count
        same = [o for o in self.others.values() if o[0] == mine[0]]
        done = p.done + sum(o[1] for o in same)
        total = p.total + sum(o[2] for o in same)
        changes: dict[str, Any] = {"done": done, "total": total}
        if p.text:  # plain progress: its text names the counts, as "stage: 3 / 10 images"
            changes["text"] = p.text.replace(f"{p.done} / {p.total}", f"{done} / {total}")
        names = {f.name for f in dataclasses.fields(p)}
        if "images_per_s" in names and "eta_s" in names:
            rate = mine[3] + sum(o[3] for o in same)
            changes["images_per_s"] = rate
            changes["eta_s"] = (total - done) / rate if rate > 0 else float("inf")
        return dataclasses.replace(p, **changes)


@contextlib.contextmanager
def failing_together(ranks: Ranks | None) -> Iterator[None]:
    """Run a step of a job: under torchrun an error in it stops every rank with its
    message (`Ranks.fail`: the others at their next sync point); alone it is raised as
    it is. A cancel (GeneratorExit) is no error and passes through."""
    try:
        yield
    except Exception as exc:
        if ranks is None:
            raise
        ranks.fail(exc)


def _stage(p: Progress) -> str:
    stage = getattr(p, "stage", None)
    return str(stage) if stage is not None else p.text.partition(":")[0]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _comm_device(backend: str) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" \
        else torch.device("cpu")


def _store() -> Any:
    """The process group's key-value store (torchrun's), or None where there is none."""
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return None


# -- joining the job ---------------------------------------------------------------------------


def start(device: str = "auto") -> Ranks:
    """Join torchrun's process group: nccl when the job runs on CUDA, else gloo.

    Each rank takes GPU LOCAL_RANK, or `cores // LOCAL_WORLD_SIZE` CPU threads, so ranks on
    one host share its cores instead of each starting a thread per core and thrashing.
    """
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    cuda = torch.cuda.is_available() and (device == "auto" or device.startswith("cuda"))
    backend = "nccl" if cuda else "gloo"
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise RankFailed(f"rank {rank}: LOCAL_RANK {local_rank} but only "
                             f"{torch.cuda.device_count()} GPU(s) on this host")
        torch.cuda.set_device(local_rank)  # "cuda" now means this rank's GPU everywhere
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    torch.set_num_threads(max(1, cores // max(1, local_world)))
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        dist.init_process_group(backend, timeout=timeout,
                                device_id=torch.device("cuda", local_rank) if cuda else None)
        atexit.register(stop)
    return Ranks(rank, world, local_rank, local_world, backend)


def join(rank: int, world: int, init_method: str, timeout_s: float = 60.0) -> Ranks:
    """Join a gloo group without torchrun (tests and scripts spawn their own processes)."""
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))
    atexit.register(stop)  # as `start`: a rank leaving with its gloo threads up aborts
    return Ranks(rank, world, rank, world, "gloo")


def stop() -> None:
    """Leave the process group (atexit does it for `start`)."""
    if dist.is_available() and dist.is_initialized():
        # leave together: a rank whose peers tear their sockets down while its own gloo
        # threads still run aborts ("terminate called without an active exception"); a
        # peer that is gone or stuck costs at most the short timeout, never a hang
        with contextlib.suppress(RuntimeError, ConnectionError):
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=30))
            else:
                dist.barrier()
        dist.destroy_process_group()
