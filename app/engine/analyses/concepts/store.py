"""Dictionaries on disk: one folder each, never pickled, written so a crash leaves none half.

    <cache>/concepts/<model key>/<layer>/samples-<key>/   samples.npz + .json (or partial.*)
    <cache>/concepts/<model key>/<layer>/<method><K>-<key>/
        dictionary.npy   K × C float32, unit rows, in concept order
        encoder.npz      sae only: w_enc (K × C), b_enc (K), b_dec (C)
        names.json       one name per concept ("concept 0", …), renamable
        meta.json        written last: its presence means the folder is complete
        fit.npz/.json    the optimization's checkpoint while it runs

The model key names the model, its exact weights and its preprocessing
(`runtime.cache.model_key`); the sample key adds the folder's listing fingerprint (paths,
sizes, modification times), the sample budget, the seed and the frame size; the fit key adds
the method, K and the fit's settings. So the samples of one folder serve every method and K,
and any change to what went in makes a new folder rather than a stale answer. Everything is
read with `allow_pickle=False`.

The folder's files are the runtime's direction-set format (`runtime.directions`: written
and read there, so that every view finds a concept layer by its name); this module adds
what only a learned dictionary has (its samples, error, dataset) on top.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from app.engine.analyses.concepts.layer import METHODS, ConceptDictionary
from app.engine.runtime.directions import (
    STORE_FORMAT,
    default_names,
    load_direction_set,
    read_meta,
    read_names,
    rename_direction,
    write_direction_set,
)

__all__ = ["STORE_FORMAT", "default_names", "load_dictionary", "read_meta", "read_names",
           "rename_concept", "write_dictionary"]

write_dictionary = write_direction_set


def load_dictionary(folder: str | Path) -> ConceptDictionary | None:
    """The dictionary stored in `folder`, or None when there is no complete one."""
    found = load_direction_set(folder)
    if found is None or found.kind not in METHODS:
        return None
    meta = found.meta
    try:
        return ConceptDictionary(
            source_layer=found.source, method=found.kind, directions=found.directions,
            names=found.names, folder=Path(folder), images=int(meta["images"]),
            samples=int(meta["samples"]), relative_error=float(meta["relative_error"]),
            signed=bool(meta["signed"]),
            encoder=None if found.encoder is None else dict(found.encoder),
            active=found.active, dead=int(meta.get("dead_concepts", 0)),
            skipped=tuple((str(p), str(r)) for p, r in meta.get("skipped", [])))
    except (ValueError, KeyError, TypeError):
        return None


def rename_concept(dictionary: ConceptDictionary, index: int, name: str) -> ConceptDictionary:
    """Give concept `index` the name `name` (stored beside the dictionary); returns the
    dictionary with its new names. An empty name restores the default."""
    if not 0 <= index < dictionary.k:
        raise ValueError(f"no concept {index}: the dictionary has {dictionary.k}")
    renamed = rename_direction(dictionary.direction_set(), index, name)
    return replace(dictionary, names=renamed.names)
