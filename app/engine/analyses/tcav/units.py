"""A tested concept becomes a unit: each layer's CAV as a one-unit direction layer.

After a test, the concept's CAVs of a layer (one per run) are averaged into one unit
direction and stored as a runtime direction set of kind `linear`, named
`<layer>@cav-<concept>` (the concept folder's name): its one unit's map is CAV · activation
at each position, so the window tiles the concept's presence live, renders its preferred
image, scans its top patches and deletes it (projects it out of the layer) as it does any
unit, and `deepvis layers` lists it. The set's folder is keyed by the CAVs' own cache names
(model, layer, method, the exact files on each side), so the same question asked again
rewrites the same folder and a changed folder makes a new one; the newest of a name is what
the views show (`runtime.directions.direction_sets`).

The mean of unit CAVs, renormalized, rather than one run's CAV: each run's random set is
another subset, and the mean keeps what the runs agree on (the concept) while their
disagreements (each random set's own quirks) average down.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.core.files import safe_filename
from app.engine.runtime.cache import cache_root
from app.engine.runtime.directions import (
    DirectionSet,
    direction_layer_name,
    load_direction_set,
    write_direction_set,
)

CAV_TAG = "cav-"


def concept_tag(concept: str | Path) -> str:
    """`cav-striped`: the tag of a concept folder's direction layers (lowercase, `-`-joined
    letters and digits, so the name reads in every list and never holds an `@`)."""
    name = Path(concept).expanduser().resolve().name.lower()
    words = "".join(ch if ch.isalnum() else " " for ch in name).split()
    return CAV_TAG + ("-".join(words) or "concept")


def mean_direction(cavs: np.ndarray) -> np.ndarray:
    """(C,) unit vector: the runs' unit CAVs (runs × C) averaged and renormalized."""
    v = np.asarray(cavs, np.float64).mean(0)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def write_cav_units(cache_dir: str, model_key: str, concept: str | Path, layer: str,
                    cavs: np.ndarray, cav_names: Sequence[str], facts: dict[str, object]
                    ) -> DirectionSet | None:
    """Store `layer`'s concept CAV as a one-unit direction layer; the set, or None when the
    cache cannot be written (the test's answer stands without it)."""
    tag = concept_tag(concept)
    key = hashlib.sha256(json.dumps(sorted(cav_names)).encode()).hexdigest()[:16]
    folder = (cache_root(cache_dir) / "directions" / model_key / safe_filename(layer)
              / f"{tag}-{key}")
    name = direction_layer_name(layer, tag)
    meta = {"kind": "linear", "source_layer": layer, "direction_layer": name,
            "made_by": "tcav", "concept": str(concept), **facts}
    try:
        write_direction_set(folder, mean_direction(cavs)[None, :], [tag[len(CAV_TAG):]], meta)
    except OSError:
        return None
    return load_direction_set(folder)
