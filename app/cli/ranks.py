"""The commands' side of torchrun: join the ranks when launched by it, drive a job on them.

`scan`, `dissect`, `render` and `ablate` call `join_ranks(args)` after checking their flags
and before loading the model: None without torchrun (and the command runs exactly as it
always did), else the `Ranks` to hand the job. `drive` runs the job with the one progress
bar, shown by rank 0 for the whole job; only rank 0 prints results and writes outputs.
"""

from __future__ import annotations

import argparse
from collections.abc import Generator
from typing import TYPE_CHECKING, TypeVar

from app.cli.common import settings_for
from app.cli.progress import TextProgress
from app.core.jobs import Progress, run_job

if TYPE_CHECKING:  # torch-heavy: imported only when torchrun launched the command
    from app.engine.runtime.distributed import Ranks

P = TypeVar("P", bound=Progress)
R = TypeVar("R")


def join_ranks(args: argparse.Namespace) -> Ranks | None:
    """This process's `Ranks` when torchrun started it, else None (nothing is imported)."""
    from app.engine.runtime import distributed

    if not distributed.launched():
        return None
    return distributed.start(settings_for(args).model.device)


def is_root(ranks: Ranks | None) -> bool:
    """True where results are printed and written: one process, or rank 0."""
    return ranks is None or ranks.is_root


def drive(job: Generator[P, None, R], label: str, ranks: Ranks | None) -> R:
    """`run_job` with the progress bar: this job's, or on rank 0 the whole torchrun job's."""
    bar = TextProgress(label)
    try:
        if ranks is None:
            return run_job(job, bar)
        return run_job(job, ranks.progress(bar if ranks.is_root else None))
    finally:
        bar.close()
