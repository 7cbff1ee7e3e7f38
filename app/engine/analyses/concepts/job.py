"""`learn_concepts`: the job that learns a layer's concept dictionary from a folder.

Two stages, each checkpointed so that a killed or cancelled run picks up where it stopped
and ends with the dictionary an uninterrupted run gives: collecting the samples
(`samples`: a seeded reservoir, saved every few batches and on cancel) and fitting them
(`nmf` or `sae`: the optimization's whole state saved every few dozen steps and on cancel;
each step is deterministic given the state). The samples are kept after the fit, so a second
method or K on the same folder only fits. A finished dictionary is returned from the cache
at once (`cached`); `resume=False` throws checkpoints and cache away and starts over.

Under torchrun (`ranks`) the ranks split the folder into the single-process run's batches
(`Ranks.positions`), so every image's activations are the ones one process computes; each
rank keeps its own reservoir, and rank 0 merges them (`SampleReservoir.absorb`: keys depend
on the image's index in the whole listing, not on who read it), which is exactly the
single-process reservoir. Rank 0 then fits alone — the fit is small next to the pass over
the folder — writes, and sends the dictionary to the others.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.core.files import files_fingerprint, safe_filename
from app.core.jobs import Job
from app.engine.analyses.concepts.layer import METHODS, ConceptDictionary, concept_layer_name
from app.engine.analyses.concepts.nmf import NMFFit, residual_norm, wide
from app.engine.analyses.concepts.sae import SAEFit, reconstruction_error
from app.engine.analyses.concepts.samples import (
    ConceptProgress,
    Samples,
    collect_samples,
    load_state,
    save_state,
)
from app.engine.analyses.concepts.store import (
    load_dictionary,
    read_meta,
    read_names,
    write_dictionary,
)
from app.engine.runtime.cache import CACHE_FORMAT, cache_root, model_key
from app.engine.runtime.dataset_pass import folder_images, layer_map_shape
from app.engine.runtime.distributed import Ranks, failing_together
from app.engine.runtime.models import LoadedModel

NMF_ITERATIONS = 400  # HALS usually converges (to tol) in far fewer
SAE_STEPS = 3000
STEPS_PER_YIELD = {"nmf": 5, "sae": 10}  # a cancel waits for at most this many
SAVE_EVERY = 10  # yields between two checkpoints of the fit


class ConceptsError(ValueError):
    """A dictionary that cannot be learned (no images, unknown layer, bad K); one line."""


def _key(doc: list[Any]) -> str:
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def default_active(k: int) -> int:
    """The SAE's TopK: 32 latents per sample for large dictionaries, fewer for small ones."""
    return max(1, min(32, k // 8))


def concepts_root(cache_dir: str, loaded: LoadedModel, layer: str) -> Path:
    """Where the dictionaries of `layer` of `loaded` are cached."""
    return cache_root(cache_dir) / "concepts" / model_key(loaded) / safe_filename(layer)


def learn_concepts(
    loaded: LoadedModel, dataset: str | Path, layer: str, k: int = 32, method: str = "nmf",
    *, samples: int = 32768, seed: int = 0, batch_size: int = 16, cache_dir: str = "",
    out: str | Path | None = None, max_pixels: int = 80_000_000, max_side: int = 1280,
    resume: bool = True, iterations: int | None = None, active: int | None = None,
    tol: float = 1e-5, ranks: Ranks | None = None,
) -> Job[ConceptProgress, ConceptDictionary]:
    """Learn K directions of `layer` over the images under `dataset` (see the module doc).

    `iterations`: NMF's iteration cap or the SAE's optimizer steps; `active`: the SAE's TopK.
    Results go to the cache (`concepts_root`), or to `out` when given. With `ranks`
    (torchrun) each rank samples its batches of the folder, rank 0 merges the reservoirs
    (exactly the one-process reservoir), fits and writes; every rank returns the result.
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise ConceptsError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    if k <= 0 or samples <= 0 or batch_size <= 0:
        raise ConceptsError("K, the sample budget and the batch size must be positive")
    if iterations is not None and iterations <= 0:
        raise ConceptsError("the number of iterations must be positive")
    active = active or default_active(k)
    if method == "sae" and not 0 < active <= k:
        raise ConceptsError(f"the SAE's active latents must be between 1 and K = {k}")
    root, files = folder_images(dataset, ConceptsError)
    shape, clone = layer_map_shape(loaded, layer, ConceptsError)
    channels = int(shape[0])

    mkey = model_key(loaded)
    dataset_doc = {"root": Path(os.path.abspath(root)).as_posix(),
                   "digest": files_fingerprint(files), "files": len(files)}
    # max_pixels decides which files are skipped, max_side what the model sees of the rest
    sample_key = _key([CACHE_FORMAT, mkey, layer, dataset_doc["digest"], samples, seed,
                       max_side, max_pixels])
    steps = iterations or (NMF_ITERATIONS if method == "nmf" else SAE_STEPS)
    fit_key = _key([sample_key, method, k, steps, active if method == "sae" else 0, tol])
    base = Path(out) if out is not None else concepts_root(cache_dir, loaded, layer)
    sample_dir = base / f"samples-{sample_key}"
    folder = base / f"{method}{k}-{fit_key}"
    if ranks is not None:  # before anything is read from or written to the cache
        ranks.agree({"model weights": mkey, "dataset listing": dataset_doc, "layer": layer,
                     "method": method, "k": k, "samples": samples, "seed": seed,
                     "steps": steps, "batch size": batch_size})
    found = None
    if resume:
        found = load_dictionary(folder)
        meta = read_meta(folder)
        if found is None or meta is None or meta.get("fit_key") != fit_key:
            found = None
    else:
        own = [] if ranks is None else [_rank_dir(sample_dir, ranks, batch_size)]
        for f, name in ((sample_dir, "samples"), (sample_dir, "partial"), (folder, "fit"),
                        *((d, n) for d in own for n in ("samples", "partial"))):
            for ext in (".npz", ".json"):
                (f / f"{name}{ext}").unlink(missing_ok=True)
    if ranks is not None:  # rank 0's cache decides: on other hosts it is not there
        found = ranks.broadcast(found)
    if found is not None:
        return replace(found, cached=True, seconds=time.perf_counter() - started)

    collect = functools.partial(
        collect_samples, loaded, files, layer, layer in clone, channels, budget=samples,
        seed=seed, batch_size=batch_size, max_pixels=max_pixels, max_side=max_side)
    got: Samples | None
    if ranks is None:
        got = yield from collect(sample_dir)
    else:
        got = yield from _collect_on_ranks(collect, ranks, sample_dir, len(files), batch_size)
    if got is None:
        assert ranks is not None  # not rank 0: the result comes from rank 0 when it has one
        result: ConceptDictionary = ranks.broadcast(None)
        return replace(result, seconds=time.perf_counter() - started)
    with failing_together(ranks):
        result = yield from _fit_and_write(
            loaded, got, folder, layer, method, k, active, seed, steps, tol,
            dataset_doc=dataset_doc, fit_key=fit_key)
    if ranks is not None:
        ranks.broadcast(result)
    return replace(result, seconds=time.perf_counter() - started)


def _rank_dir(sample_dir: Path, ranks: Ranks, batch_size: int) -> Path:
    """Where a rank checkpoints its part: its batches depend on the world and batch size."""
    return sample_dir / f"rank{ranks.rank}of{ranks.world}-b{batch_size}"


def _collect_on_ranks(
    collect: Callable[..., Job[ConceptProgress, Samples]], ranks: Ranks, sample_dir: Path,
    n_files: int, batch_size: int,
) -> Job[ConceptProgress, Samples | None]:
    """Each rank samples its batches; rank 0 gets the merged samples (None elsewhere).

    Rank 0's finished samples, when it has them, serve every rank: nobody collects again.
    Each rank checkpoints its part in a folder of its own, kept until the merge is written.
    """
    have = ranks.broadcast(load_state(sample_dir, "samples") is not None
                           if ranks.is_root else None)
    if have:
        if not ranks.is_root:
            return None
        whole: Samples = yield from collect(sample_dir)
        return whole
    own = _rank_dir(sample_dir, ranks, batch_size)
    with failing_together(ranks):
        part = yield from collect(own, ids=ranks.positions(n_files, batch_size))
    parts = ranks.gather((part.reservoir.state(), part.images, part.skipped, part.map_shape))
    if parts is None:
        ranks.check()  # rank 0 has written the merged samples
        shutil.rmtree(own, ignore_errors=True)
        return None
    reservoir = part.reservoir
    images, skipped, shape = 0, list[tuple[str, str]](), part.map_shape
    for state, n, more, map_shape in parts:
        if state is not parts[0][0]:
            reservoir.absorb(state)
        images, skipped = images + n, skipped + list(more)
        shape = shape if shape != (0, 0) else map_shape  # a rank may have read no image
    merged = Samples(reservoir, images, tuple(sorted(skipped)), shape)
    merged.save(sample_dir)
    ranks.check()
    shutil.rmtree(own, ignore_errors=True)
    return merged


def _fit_and_write(
    loaded: LoadedModel, got: Samples, folder: Path, layer: str, method: str, k: int,
    active: int, seed: int, steps: int, tol: float, *, dataset_doc: dict[str, Any],
    fit_key: str,
) -> Job[ConceptProgress, ConceptDictionary]:
    """Fit the samples, write the dictionary, return it as stored."""
    a = got.reservoir.matrix()
    if a.shape[0] < k:
        raise ConceptsError(f"{a.shape[0]} samples from {got.images} readable image(s) are "
                            f"too few for K = {k}")
    signed, channels = bool((a < 0).any()), int(a.shape[1])
    if method == "nmf":
        directions, encoder, error, dead = yield from _fit_nmf(a.clamp_min(0), k, seed, steps,
                                                               tol, folder)
    else:
        directions, encoder, error, dead = yield from _fit_sae(a, k, active, seed, steps,
                                                               folder)
    meta = {
        "concept_layer": concept_layer_name(layer, method, k), "source_layer": layer,
        "method": method, "kind": method, "k": k, "channels": channels, "images": got.images,
        "samples": int(a.shape[0]), "relative_error": error, "signed": signed,
        "dead_concepts": dead,
        "active": active if method == "sae" else 0, "model": loaded.name,
        "model_key": model_key(loaded), "dataset": dataset_doc, "map_shape": list(got.map_shape),
        "seed": seed, "steps": steps, "fit_key": fit_key, "cache_format": CACHE_FORMAT,
        "skipped": [list(s) for s in got.skipped],
    }
    write_dictionary(folder, directions, read_names(folder, k), meta, encoder)
    for ext in (".npz", ".json"):
        (folder / f"fit{ext}").unlink(missing_ok=True)
    found = load_dictionary(folder)
    assert found is not None, folder
    return found


def _restore(folder: Path, method: str) -> dict[str, torch.Tensor] | None:
    state = load_state(folder, "fit")
    if state is None or state[0].get("method") != method:
        return None
    return {n: torch.from_numpy(a) for n, a in state[1].items()}


def _save(folder: Path, method: str, state: dict[str, torch.Tensor]) -> None:
    save_state(folder, "fit", {"method": method},
               {n: t.detach().cpu().numpy() for n, t in state.items()})


def _fit_nmf(a: torch.Tensor, k: int, seed: int, steps: int, tol: float, folder: Path
             ) -> Job[ConceptProgress, tuple[np.ndarray, None, float, int]]:
    fit = NMFFit.start(a, k, seed, tol)
    saved = _restore(folder, "nmf")
    if saved is not None:
        fit.load(saved)
    chunk, since = STEPS_PER_YIELD["nmf"], 0
    try:
        while fit.iteration < steps and not fit.converged:
            fit.step(min(chunk, steps - fit.iteration))
            since += 1
            if since >= SAVE_EVERY:
                _save(folder, "nmf", fit.state())
                since = 0
            yield ConceptProgress(done=fit.iteration, total=steps, stage="nmf",
                                  error=fit.error)
    except BaseException:
        if since:
            _save(folder, "nmf", fit.state())
        raise
    w, h = fit.result()
    norm = math.sqrt(float(wide(a).square().sum())) or 1.0
    unused = int((w.sum(0) == 0).sum())  # concepts no sample uses
    return h.cpu().numpy(), None, residual_norm(a, w, h) / norm, unused


def _fit_sae(a: torch.Tensor, k: int, active: int, seed: int, steps: int, folder: Path
             ) -> Job[ConceptProgress, tuple[np.ndarray, dict[str, np.ndarray], float, int]]:
    fit = SAEFit(a, k, active, seed, steps)
    saved = _restore(folder, "sae")
    if saved is not None:
        fit.load(saved)
    chunk, since = STEPS_PER_YIELD["sae"], 0
    try:
        while not fit.converged:
            fit.step(chunk)
            since += 1
            if since >= SAVE_EVERY:
                _save(folder, "sae", fit.state())
                since = 0
            yield ConceptProgress(done=fit.iteration, total=steps, stage="sae", error=fit.loss)
    except BaseException:
        if since:
            _save(folder, "sae", fit.state())
        raise
    w = fit.weights()
    encoder = {n: w[n].cpu().numpy() for n in ("w_enc", "b_enc", "b_dec")}
    return (w["w_dec"].cpu().numpy(), encoder, reconstruction_error(a, w, active),
            fit.dead_latents)
