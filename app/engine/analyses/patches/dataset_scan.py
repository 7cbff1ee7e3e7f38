"""Dataset scan: the top-k images of every unit of some layers, with receptive-field crops.

Engine API (what the GUI and the CLI use)
-----------------------------------------

``scan(loaded, dataset, layers, top_k=9, batch_size=32, workers=2, cache_dir="", *,
out=None, shard=(0, 1), crop_size=96, checkpoint_every=20, max_pixels=80_000_000,
max_side=1280, resume=True, mp_context=None) -> Job[PassProgress, ScanReport]``
    A job (`app.core.jobs`): drive it with ``run_job(scan(...), on_progress, cancel)``.
    Scans every image under `dataset` (recursively) and stores one result per layer in
    ``dataset_scan_dir(cache_root(cache_dir), model_key(loaded), root) / layer_dirname(layer)``
    (the dataset's own folder: another dataset's scan of the layer stays), or under `out`
    when given. Safe to drive from a worker thread: it yields a
    `PassProgress` after every batch, and a cancel between two batches closes it after a
    checkpoint (`run_job` then raises `Cancelled`). Running it again resumes from the
    checkpoint and ends with exactly the result of an uninterrupted scan; running it on
    an unchanged dataset that is already scanned returns at once (``report.cached``).
    Decoding runs in `workers` DataLoader processes, forked by default; from a process
    that runs Qt threads pass ``mp_context="forkserver"`` (or "spawn") to be safe.
    Raises `ScanError` (one line, for the user) when it cannot start.

``load_scan(root, model_key, layer) -> ScanResult | None`` (from `app.core.scan_results`, no torch)
    ``root`` is ``cache_root(settings.cache.dir)``. The newest scan of the layer, whichever
    dataset (``ScanResult.dataset`` names it); ``scans_of`` lists them all.
    ``ScanResult.top(unit)`` lists
    ``Entry(rank, path, value, y, x, box, model_box)`` best first, ``box`` being
    (y0, x0, y1, x1), half-open, in the image file's own pixels;
    ``ScanResult.unit_crops(unit)`` is the matching (n, S, S, 3) uint8 crops.

``merge_scans(inputs, out) -> list[Path]``
    Merges scan folders of disjoint parts of a dataset (e.g. ``--shard i/n`` runs) into
    the result of one scan of the whole.

How a batch flows: DataLoader worker processes decode (`read_image`, downscaled like a
live frame to `max_side`) and, on a CPU device, also crop/resize/normalize with the live
view's `prepare_batch`; the main process runs the model with hooks on the chosen layers
only, stopping the forward pass once the deepest of them is recorded, and merges each
layer's per-image maxima into a (units, k) top-k held on the device. Memory is
O(units × k) whatever the dataset size. The crops are cut at the end, from the files
that made some top-k, by the same workers.

A direction layer (`L@nmf32`, a concept dictionary) is scanned like any layer: the
recorder runs the truncated forward to its source and maps it to codes
(`runtime.directions`); the crops use the source's receptive fields.

Exactness: a resumed scan repeats the same batches, so it is bitwise identical to an
uninterrupted one. Shards and merges are exact on the values they are given; on a real
network a different batch grouping can change a float's last bit (BLAS blocking), which
can only swap near-ties. With batch-invariant arithmetic (the tests' integer net) a merge
of shards is bitwise the whole scan.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.core.files import files_fingerprint, list_images
from app.core.jobs import Job
from app.core.scan_results import (
    dataset_scan_dir,
    layer_dirname,
    load_scan_folder,
    merge_results,
)
from app.engine.analyses.patches.crops import cut_crops, remove_tree
from app.engine.analyses.patches.pipeline import NO_ID, Frames, collate
from app.engine.runtime.cache import CACHE_FORMAT, cache_root, model_key, writable_cache
from app.engine.runtime.dataset_pass import (
    Meter,
    PassProgress,
    batches,
    load_checkpoint,
    make_loader,
    save_checkpoint,
)
from app.engine.runtime.directions import (
    DirectionLayer,
    UnknownDirectionLayer,
    direction_layers,
)
from app.engine.runtime.distributed import Ranks, failing_together
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import prepare_batch
from app.engine.runtime.receptive_field import ReceptiveField, receptive_field
from app.engine.runtime.recorder import ActivationRecorder, discover_layers, truncated_forward

__all__ = [
    "ScanError", "ScanReport", "TopKTracker", "default_layers", "merge_scans", "scan",
]


class ScanError(ValueError):
    """A scan that cannot start (no images, unknown layer); one line for the user."""


@dataclass(frozen=True)
class ScanReport:
    """What a finished scan did and where its results are."""

    folder: Path  # the scan folder: one sub-folder per layer
    layers: dict[str, Path]
    dataset: str
    files: int  # images found (in this shard)
    scanned: int  # decoded and run through the model
    skipped: tuple[tuple[str, str], ...]  # (path, reason) of unreadable files
    seconds: float
    images_per_s: float
    resumed_from: int = 0  # files already done by an earlier, interrupted run
    cached: bool = False  # nothing to do: an identical scan was already stored
    rf: dict[str, ReceptiveField] = field(default_factory=dict, repr=False)


# -- top-k on the device -----------------------------------------------------------------------


class TopKTracker:
    """Per-unit top-k of (value, image id, location), merged on the device batch by batch.

    Order: value descending, then image id ascending (ids follow path order), so ties are
    deterministic and batches may arrive in any grouping. State is (C, k) tensors.
    """

    def __init__(self, channels: int, k: int, device: torch.device) -> None:
        self.k = k
        self.values = torch.full((channels, k), -math.inf, device=device)
        self.ids = torch.full((channels, k), NO_ID, dtype=torch.int64, device=device)
        self.locs = torch.zeros((channels, k), dtype=torch.int64, device=device)

    def merged(self, acts: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """New (values, ids, locs) after images `ids` (N,) with maps `acts` (N, C, H, W)."""
        flat = acts.detach().flatten(2)
        loc = flat.argmax(2)  # first maximum on ties, as numpy's argmax
        val = flat.gather(2, loc.unsqueeze(2)).squeeze(2).float().nan_to_num(nan=-math.inf)
        c = val.shape[1]
        cand_v = torch.cat([self.values, val.t()], 1)
        cand_i = torch.cat([self.ids, ids.to(self.ids.device).view(1, -1).expand(c, -1)], 1)
        cand_l = torch.cat([self.locs, loc.t()], 1)
        return self._best(cand_v, cand_i, cand_l)

    def _best(self, cand_v: torch.Tensor, cand_i: torch.Tensor, cand_l: torch.Tensor
              ) -> tuple[torch.Tensor, ...]:
        by_id = cand_i.argsort(stable=True, dim=1)
        by_value = cand_v.gather(1, by_id).argsort(stable=True, dim=1, descending=True)
        keep = by_id.gather(1, by_value)[:, : self.k]
        return cand_v.gather(1, keep), cand_i.gather(1, keep), cand_l.gather(1, keep)

    def absorb(self, state: dict[str, np.ndarray]) -> None:
        """Fold in another tracker's `state()` over other images: the top-k of both, exactly
        (the order is total, so the top-k of a union is the top-k of the parts' top-k)."""
        dev = self.values.device
        other = [torch.from_numpy(state[n]).to(dev) for n in ("values", "ids", "locs")]
        self.commit(self._best(torch.cat([self.values, other[0]], 1),
                               torch.cat([self.ids, other[1]], 1),
                               torch.cat([self.locs, other[2]], 1)))

    def commit(self, state: tuple[torch.Tensor, ...]) -> None:
        self.values, self.ids, self.locs = state

    def state(self) -> dict[str, np.ndarray]:
        return {"values": self.values.cpu().numpy(), "ids": self.ids.cpu().numpy(),
                "locs": self.locs.cpu().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        dev = self.values.device
        self.values = torch.from_numpy(state["values"]).to(dev)
        self.ids = torch.from_numpy(state["ids"]).to(dev)
        self.locs = torch.from_numpy(state["locs"]).to(dev)


# -- checkpoints ---------------------------------------------------------------------------------


def _checkpoint_dir(folder: Path, key: str) -> Path:
    return folder / ".partial" / key


def _save_checkpoint(path: Path, done_batches: int, trackers: dict[str, TopKTracker],
                     skipped: list[tuple[str, str]], elapsed: float) -> None:
    arrays = {f"{i}.{name}": a for i, t in enumerate(trackers.values())
              for name, a in t.state().items()}
    save_checkpoint(path, {"done_batches": done_batches, "layers": list(trackers),
                           "skipped": skipped, "elapsed": elapsed}, arrays)


def _load_checkpoint(path: Path, trackers: dict[str, TopKTracker]) -> tuple[int, list, float]:
    saved = load_checkpoint(path)
    if saved is None or saved[0].get("layers") != list(trackers):
        return 0, [], 0.0
    doc, arrays = saved
    try:
        states = [{n: arrays[f"{i}.{n}"] for n in ("values", "ids", "locs")}
                  for i in range(len(trackers))]
        result = int(doc["done_batches"]), [tuple(s) for s in doc["skipped"]], \
            float(doc["elapsed"])
    except (KeyError, TypeError, ValueError):
        return 0, [], 0.0
    for t, state in zip(trackers.values(), states, strict=True):
        t.load(state)
    return result


# -- the scan ------------------------------------------------------------------------------------


def scan(
    loaded: LoadedModel, dataset: str | Path, layers: Sequence[str], top_k: int = 9,
    batch_size: int = 32, workers: int = 2, cache_dir: str = "", *,
    out: str | Path | None = None, shard: tuple[int, int] = (0, 1), crop_size: int = 96,
    checkpoint_every: int = 20, max_pixels: int = 80_000_000, max_side: int = 1280,
    resume: bool = True, mp_context: str | None = None, ranks: Ranks | None = None,
) -> Job[PassProgress, ScanReport]:
    """Scan `dataset` for the top-k images of every unit of `layers`; see the module doc.

    With `ranks` (torchrun) each rank scans its batches and rank 0 merges and writes the
    one result, identical to a single-process scan; the others return their own part's
    report.
    """
    started = time.perf_counter()
    if top_k <= 0 or batch_size <= 0 or workers < 0 or checkpoint_every <= 0:
        raise ScanError("top_k, batch_size and checkpoint_every must be positive, workers ≥ 0")
    index, count = shard
    if not 0 <= index < count:
        raise ScanError(f"bad shard {index}/{count}: need 0 ≤ I < N")
    root = Path(dataset).expanduser()
    if not root.exists():
        raise ScanError(f"dataset not found: {root}")
    files = list_images(root)[index::count]
    if not files:
        raise ScanError(f"no images under {root} (looked for "
                        "jpg, jpeg, png, webp, bmp, tif, tiff)")
    layers = list(dict.fromkeys(layers))
    digest = files_fingerprint(files)
    root_name = Path(os.path.abspath(root)).as_posix()
    if ranks is not None:  # before anything is read from or written to the cache
        ranks.agree({"model weights": model_key(loaded),
                     "dataset listing": f"{len(files)} files under {root_name} ({digest})",
                     "layers": layers, "top_k": top_k, "batch size": batch_size,
                     "crop size": crop_size, "max side": max_side, "max pixels": max_pixels,
                     "shard": f"{index}/{count}"})
    try:
        directions = direction_layers(loaded, layers, cache_dir)
    except UnknownDirectionLayer as exc:
        raise ScanError(str(exc)) from None
    shapes, clone = _layer_shapes(loaded, layers, directions)
    pre = loaded.preprocess
    folder = Path(out) if out is not None else dataset_scan_dir(
        cache_root(cache_dir), model_key(loaded), root_name)
    rfs = {layer: receptive_field(loaded.module, layer, pre.size) for layer in layers}
    dataset_doc: dict[str, Any] = {"root": root_name, "digest": digest, "files": len(files),
                                   "shard": f"{index}/{count}"}
    if directions:  # a relearned dictionary is another layer: its scan is not this one
        dataset_doc["directions"] = {n: _set_id(d) for n, d in directions.items()}

    cached = _cached_report(folder, layers, dataset_doc, top_k, crop_size, loaded) \
        if resume else None
    if ranks is not None:  # rank 0's cache decides: on other hosts it is not there
        cached = ranks.broadcast(cached)
    if cached is not None:
        return ScanReport(folder, cached[0], root_name, len(files), cached[1],
                          tuple(cached[2]), time.perf_counter() - started, 0.0, 0, True, rfs)

    device = loaded.device
    trackers = {layer: TopKTracker(shapes[layer][0], top_k, device) for layer in layers}
    # a rank scans whole batches of the single-process run: rank, rank + N, … (see
    # runtime.distributed); ids stay indices into the whole listing
    mine = list(range(len(files))) if ranks is None else ranks.positions(len(files), batch_size)
    key_doc: list[Any] = [digest, layers, top_k, batch_size, index, count, model_key(loaded),
                          max_side, *dataset_doc.get("directions", {}).values()]
    if ranks is not None:
        key_doc += ["rank", ranks.rank, ranks.world]
    run_key = hashlib.sha256(json.dumps(key_doc).encode()).hexdigest()[:16]
    ckpt = _checkpoint_dir(folder, run_key)
    with failing_together(ranks):
        if out is None:  # before the work whose checkpoints and result it will hold
            writable_cache(cache_dir)
        scanned_now, resumed_from, skipped = yield from _scan_part(
            loaded, files, mine, trackers, clone, ckpt, batch_size=batch_size,
            workers=workers, checkpoint_every=checkpoint_every, max_pixels=max_pixels,
            max_side=max_side, resume=resume, mp_context=mp_context, started=started,
            directions=directions)

    states = {n: t.state() for n, t in trackers.items()}
    if ranks is not None:
        parts = ranks.gather((states, skipped, scanned_now, resumed_from))
        if parts is None:  # not rank 0: wait until rank 0 has written the merged result
            ranks.check()
            remove_tree(ckpt)
            seconds = time.perf_counter() - started
            return ScanReport(folder, {}, root_name, len(mine), len(mine) - len(skipped),
                              tuple(sorted(skipped)), seconds, scanned_now / max(seconds, 1e-9),
                              resumed_from, False, rfs)
        for other, more, n_now, n_resumed in parts[1:]:
            for n, t in trackers.items():
                t.absorb(other[n])
            skipped += more
            scanned_now += n_now
            resumed_from += n_resumed
        states = {n: t.state() for n, t in trackers.items()}
    scanned = len(files) - len(skipped)
    with failing_together(ranks):
        if scanned == 0:  # nothing to rank: an error, never an empty result over a good one
            remove_tree(ckpt)
            raise ScanError(unreadable_message(len(files), root_name, skipped))
        layer_dirs = yield from cut_crops(
            folder, states, files, pre, rfs, shapes, crop_size, workers, max_pixels,
            max_side, mp_context, meta={
                "model": loaded.name, "model_key": model_key(loaded),
                "cache_format": CACHE_FORMAT, "top_k": top_k, "input_size": pre.size,
                "crop_size": crop_size, "max_side": max_side, "datasets": [dataset_doc],
                "files_scanned": scanned, "skipped": sorted(skipped)})
    if ranks is not None:
        ranks.check()  # the result is written: the other ranks may drop their checkpoints
    remove_tree(ckpt)
    seconds = time.perf_counter() - started
    return ScanReport(folder, layer_dirs, root_name, len(files), scanned,
                      tuple(sorted(skipped)), seconds, scanned_now / max(seconds, 1e-9),
                      resumed_from, False, rfs)


def unreadable_message(files: int, root: str, skipped: Sequence[tuple[str, str]]) -> str:
    """The one line for a dataset none of whose image files could be decoded."""
    example = f" (e.g. {skipped[0][1]})".splitlines()[0] if skipped else ""
    return f"none of the {files} image files under {root} could be read{example}"


def _scan_part(
    loaded: LoadedModel, files: list[str], mine: list[int], trackers: dict[str, TopKTracker],
    clone: set[str], ckpt: Path, *, batch_size: int, workers: int, checkpoint_every: int,
    max_pixels: int, max_side: int, resume: bool, mp_context: str | None, started: float,
    directions: dict[str, DirectionLayer] | None = None,
) -> Job[PassProgress, tuple[int, int, list[tuple[str, str]]]]:
    """The pass over the files `mine` (indices into `files`), checkpointed in `ckpt`.
    Returns (images run now, files done by an earlier run, skipped (path, reason))."""
    layers = list(trackers)
    done_batches, skipped, elapsed_before = (
        _load_checkpoint(ckpt, trackers) if resume else (0, [], 0.0))
    skipped = [(str(p), str(r)) for p, r in skipped]
    start = done_batches * batch_size
    resumed_from = min(start, len(mine))
    device, pre = loaded.device, loaded.preprocess
    in_workers = device.type == "cpu"  # on a GPU, resizing belongs on the GPU, as live
    ds = Frames([files[i] for i in mine[start:]], mine[start:], max_pixels, max_side,
                pre if in_workers else None)
    meter = Meter(len(mine), resumed_from, resumed_from)
    model = loaded.module
    last_saved = done_batches
    scanned_now = 0
    with torch.no_grad(), ActivationRecorder(model, layers, directions) as rec:
        rec.clone_layers |= clone & set(layers)
        forward, unhook = truncated_forward(model, rec, layers)
        it = batches(make_loader(ds, batch_size, workers, collate, mp_context))
        try:
            for batch in it:
                if batch["images"]:
                    if in_workers:
                        x = torch.stack(batch["images"])
                    else:
                        x = prepare_batch([t.to(device) for t in batch["images"]], pre)
                    rec.run(x, forward)
                    # all layers merged first, then committed: a failure mid-way leaves
                    # the state of the previous batch, never half a batch
                    new = {n: trackers[n].merged(rec.activations[n], batch["ids"])
                           for n in layers}
                    for n, state in new.items():
                        trackers[n].commit(state)
                    scanned_now += len(batch["images"])
                skipped += [(files[i], err) for i, err in batch["failed"]]
                done_batches += 1
                if done_batches - last_saved >= checkpoint_every:
                    _save_checkpoint(ckpt, done_batches, trackers, skipped,
                                     elapsed_before + time.perf_counter() - started)
                    last_saved = done_batches
                # a cancel closes the generator here: the except below checkpoints
                yield meter.update("scan", len(batch["images"]) + len(batch["failed"]),
                                   len(skipped))
        except BaseException:
            if done_batches > last_saved:
                _save_checkpoint(ckpt, done_batches, trackers, skipped,
                                 elapsed_before + time.perf_counter() - started)
            raise
        finally:
            it.close()  # shuts the worker processes down
            unhook()
    return scanned_now, resumed_from, skipped


def _set_id(d: DirectionLayer) -> str:
    return d.set.folder.name if d.set.folder is not None else d.set.name


def _layer_shapes(loaded: LoadedModel, layers: Sequence[str],
                  directions: dict[str, DirectionLayer] | None = None,
                  ) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """(C, H, W) of each layer, and the layers whose outputs are overwritten in place later
    in the pass (ResNet's `+=`), which the recorder must copy. A direction layer (`L@nmf32`)
    is recorded from its source (`runtime.directions`): its units are the directions."""
    infos, clone = discover_layers(loaded.module, loaded.preprocess.size, loaded.device,
                                   [d.set for d in (directions or {}).values()])
    by_name = {i.name: i.shape for i in infos}
    missing = [layer for layer in layers if layer not in by_name]
    if missing:
        sample = ", ".join(list(by_name)[:6])
        raise ScanError(f"no layer named {missing[0]!r} with a (C, H, W) output in "
                        f"{loaded.name} (e.g. {sample}; see `deepvis layers`)")
    if not layers:
        raise ScanError("no layers to scan")
    return {layer: by_name[layer] for layer in layers}, clone


def _cached_report(folder: Path, layers: Sequence[str], dataset_doc: dict, top_k: int,
                   crop_size: int, loaded: LoadedModel) -> tuple[dict, int, list] | None:
    dirs, scanned, skipped = {}, 0, []
    for layer in layers:
        r = load_scan_folder(folder / layer_dirname(layer))
        if (r is None or r.meta.get("datasets") != [dataset_doc] or r.meta.get("top_k") != top_k
                or r.meta.get("crop_size") != crop_size
                or r.meta.get("cache_format") != CACHE_FORMAT
                or r.meta.get("model_key") != model_key(loaded)):
            return None
        dirs[layer] = r.folder
        scanned, skipped = r.meta["files_scanned"], [tuple(s) for s in r.meta["skipped"]]
    return dirs, scanned, skipped


def merge_scans(inputs: Iterable[str | Path], out: str | Path) -> list[Path]:
    """Merge scan folders (layer sub-folders in each) into `out`; the layers all share."""
    roots = [Path(p) for p in inputs]
    if len(roots) < 2:
        raise ScanError("--merge needs at least two scan folders")
    per_root = []
    for r in roots:
        found = {}
        if r.is_dir():
            for sub in sorted(r.iterdir()):
                res = load_scan_folder(sub)
                if res is not None:
                    found[res.layer] = res
        if not found:
            raise ScanError(f"no finished scan in {r}")
        per_root.append(found)
    common = [layer for layer in per_root[0] if all(layer in f for f in per_root[1:])]
    if not common:
        raise ScanError("the scans to merge share no layer")
    written = []
    for layer in common:
        try:
            written.append(merge_results([f[layer] for f in per_root],
                                         Path(out) / layer_dirname(layer)))
        except ValueError as exc:
            raise ScanError(str(exc)) from None
    return written


def default_layers(loaded: LoadedModel, preferred: Sequence[str]) -> list[str]:
    """`preferred` names that exist in the model, else the model's default layer."""
    from app.engine.runtime.recorder import default_layer

    infos, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    names = {i.name for i in infos}
    chosen = [p for p in preferred if p in names]
    return chosen or [default_layer(infos)]

