"""torchrun: what the ranks of one dissection merge between its passes and after them.

Everything merged is integer counts or a total order, so the merge is exact: the sketches
(their state is a function of the values alone) and the top images after pass 1, the
tallies, label pixels and mask tiles after pass 2. Rank 0 writes the one result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from app.engine.analyses.dissection.sketch import QuantileSketch
from app.engine.analyses.dissection.tally import Tally, TopImages
from app.engine.analyses.dissection.tiles import TileStage
from app.engine.runtime.distributed import Ranks


def merge_first_pass(ranks: Ranks, todo: list[str], sketches: dict[str, QuantileSketch],
                     tops: dict[str, TopImages], skipped: list[Any],
                     limits: dict[str, tuple[np.ndarray, np.ndarray]], quantile: float
                     ) -> list[Any]:
    """Rank 0 merges the sketches (exactly: the state is a function of the values alone) and
    the top images; every rank gets the thresholds, the top images and the skipped files."""
    parts = ranks.gather(({n: sketches[n].state() for n in todo},
                          {n: tops[n].state() for n in todo}, skipped))
    shared = None
    if parts is not None:
        for sketch_states, top_states, more in parts[1:]:
            for name in todo:
                other = QuantileSketch(sketches[name].units, sketches[name].device,
                                       sketches[name].bins)
                other.load(sketch_states[name])
                sketches[name].merge(other)
                tops[name].absorb(top_states[name])
            skipped = skipped + more
        shared = ({n: sketches[n].quantile(1.0 - quantile) for n in todo},
                  {n: tops[n].state() for n in todo}, sorted(skipped))
    thresholds, top_states, everyone_skipped = ranks.broadcast(shared)
    limits.update(thresholds)
    for name in todo:
        tops[name].load(top_states[name])
    return [tuple(s) for s in everyone_skipped]


def merge_second_pass(ranks: Ranks, todo: list[str], tallies: dict[str, Tally],
                      label_px: np.ndarray, tiles: dict[str, TileStage], skipped: list[Any],
                      resumed: bool, computed: int
                      ) -> tuple[list[Any], np.ndarray, bool, int]:
    """Tallies summed over the ranks (integers: exact); the mask tiles each rank drew for
    top images, the skipped files and the counts gathered on rank 0."""
    for name in todo:
        tallies[name].both = ranks.sum(tallies[name].both)
        tallies[name].unit_cat = ranks.sum(tallies[name].unit_cat)
    label_px = ranks.sum(torch.from_numpy(label_px)).numpy()
    mine = {name: t.state() for name, t in tiles.items()} if not ranks.is_root else {}
    parts = ranks.gather((mine, skipped, resumed, computed))
    if parts is None:
        return skipped, label_px, resumed, computed
    everyone: set[tuple[str, str]] = set()  # pass 1's skipped files are in every part
    resumed, computed = False, 0
    for more_tiles, more, was_resumed, n_now in parts:
        for name, state in more_tiles.items():
            tiles[name].absorb(state)
        everyone |= {(str(a), str(b)) for a, b in more}
        resumed, computed = resumed or was_resumed, computed + n_now
    return sorted(everyone), label_px, resumed, computed
