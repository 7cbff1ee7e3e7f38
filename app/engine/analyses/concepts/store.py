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
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from app.core.atomic import atomic_write, atomic_write_json, atomic_write_npz
from app.engine.analyses.concepts.layer import METHODS, ConceptDictionary

STORE_FORMAT = 1  # bump when a file's layout changes


def default_names(k: int) -> tuple[str, ...]:
    return tuple(f"concept {i}" for i in range(k))


def write_dictionary(folder: Path, directions: np.ndarray, names: tuple[str, ...],
                     meta: dict[str, Any], encoder: dict[str, np.ndarray] | None = None) -> None:
    """Write a finished dictionary; meta.json goes last, so a reader never sees half."""
    (folder / "meta.json").unlink(missing_ok=True)  # incomplete from here until rewritten

    def write_npy(f: IO[bytes]) -> None:
        np.save(f, np.ascontiguousarray(directions, dtype=np.float32), allow_pickle=False)

    atomic_write(folder / "dictionary.npy", write_npy)
    if encoder is not None:
        atomic_write_npz(folder / "encoder.npz",
                         {n: np.ascontiguousarray(a, dtype=np.float32) for n, a in encoder.items()})
    atomic_write_json(folder / "names.json", list(names))
    atomic_write_json(folder / "meta.json", {**meta, "store_format": STORE_FORMAT})


def load_dictionary(folder: str | Path) -> ConceptDictionary | None:
    """The dictionary stored in `folder`, or None when there is no complete one."""
    base = Path(folder)
    try:
        meta = json.loads((base / "meta.json").read_text())
        if meta.get("store_format") != STORE_FORMAT or meta.get("method") not in METHODS:
            return None
        directions = np.load(base / "dictionary.npy", allow_pickle=False)
        encoder = None
        if meta["method"] == "sae":
            with np.load(base / "encoder.npz", allow_pickle=False) as z:
                encoder = {n: z[n] for n in ("w_enc", "b_enc", "b_dec")}
        names = read_names(base, directions.shape[0])
        return ConceptDictionary(
            source_layer=meta["source_layer"], method=meta["method"],
            directions=directions, names=names, folder=base, images=int(meta["images"]),
            samples=int(meta["samples"]), relative_error=float(meta["relative_error"]),
            signed=bool(meta["signed"]), encoder=encoder, active=int(meta.get("active", 0)),
            dead=int(meta.get("dead_concepts", 0)),
            skipped=tuple((str(p), str(r)) for p, r in meta.get("skipped", [])))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((folder / "meta.json").read_text())
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def read_names(folder: Path, k: int) -> tuple[str, ...]:
    """Stored names, or the defaults when the file is missing or does not fit K.

    A relearned dictionary (`--restart`, same inputs) is the same one, bit for bit: the
    names the user gave it still fit and are kept."""
    try:
        names = json.loads((folder / "names.json").read_text())
    except (OSError, ValueError):
        return default_names(k)
    if isinstance(names, list) and len(names) == k and all(isinstance(n, str) for n in names):
        return tuple(names)
    return default_names(k)


def rename_concept(dictionary: ConceptDictionary, index: int, name: str) -> ConceptDictionary:
    """Give concept `index` the name `name` (stored beside the dictionary); returns the
    dictionary with its new names. An empty name restores the default."""
    if not 0 <= index < dictionary.k:
        raise ValueError(f"no concept {index}: the dictionary has {dictionary.k}")
    text = " ".join(name.split()) or f"concept {index}"
    names = list(read_names(dictionary.folder, dictionary.k))
    names[index] = text
    atomic_write_json(dictionary.folder / "names.json", names)
    return replace(dictionary, names=tuple(names))
