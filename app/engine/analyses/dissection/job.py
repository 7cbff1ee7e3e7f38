"""Network dissection (Bau et al. 2017) as a job: thresholds, then tallies, then labels.

Engine API
----------

``dissect(loaded, dataset, layers, *, quantile=0.005, min_iou=0.04, categories=None,
batch_size=32, workers=2, cache_dir="", out=None, top_k=4, bins=4096, ...)
-> Job[PassProgress, DissectionResult]``
    Drive it with ``run_job(dissect(...), on_progress, cancel)``. The dataset (Broden,
    simple masks, or any image folder for the built-in colour concepts: `concepts`) is read
    in `workers` DataLoader processes; the network runs truncated after the deepest chosen
    layer, with hooks on those layers only.

Two passes over the images, as NetDissect, but streamed: pass 1 folds every activation
into a per-unit `QuantileSketch` (threshold = the 1 − `quantile` quantile, within a bound
reported per unit) and keeps each unit's top-k images; pass 2 tallies masks against labels
(`Tally`) and draws the top images' masks. The images are decoded and run through the
network once: pass 1 spools the raw unit maps, the labels and thumbnails to disk (`spool`,
within `spool_gb`) and pass 2 reads them back, bitwise the same; a dataset whose spool would
exceed the budget decodes and runs the network again in pass 2 (same result).
A unit's |mask| in its IoU with a label is counted in every image that annotates the
label's category, the 2017 NetDissect's rule, not NetDissect-Lite's (only images where the
mask touches such a label); see `scoring`. Memory is O(units × (bins + labels + k)),
independent of the dataset's size. All state is integer counts, so shards merge by
addition (torchrun) and a resumed run is identical: the state is checkpointed atomically
every `checkpoint_every` batches and when the job is closed (a cancel), and a rerun
continues from there with the same batches, and says where (`resumed_at`).

Results live in ``cache_root/model_key/dissect/DIGEST/``: DIGEST names the dataset's files
(paths, sizes, times), the categories, the quantile, the bins and k, so an identical
dissection returns at once (``cached``); per layer a folder with ``tally.npz`` and the
strips ``unit_NNNN.jpg``, and ``result.json`` for the last min-IoU asked (labels are scored
from the tallies at load, so a new min-IoU costs nothing). Raises `DissectionError`
(one line) on a malformed dataset or bad settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.core.atomic import (
    cache_write_json,
    cache_write_npz,
)
from app.core.files import files_fingerprint, safe_filename
from app.core.jobs import Job
from app.engine.analyses.dissection.concepts import (
    MAX_MASK_SIDE,
    Concepts,
    DissectionError,
    find_concepts,
)
from app.engine.analyses.dissection.loader import (
    SPOOL,
    ConceptImages,
    Labelled,
    collate,
    normalize,
)
from app.engine.analyses.dissection.merge import merge_first_pass, merge_second_pass
from app.engine.analyses.dissection.result import (
    DISSECT_FORMAT,
    DissectionResult,
    LayerDissection,
)
from app.engine.analyses.dissection.scoring import label_units, summarize
from app.engine.analyses.dissection.sketch import QuantileSketch
from app.engine.analyses.dissection.spool import Chunk, Spool, label_bytes, spool_bytes
from app.engine.analyses.dissection.tally import NO_IMAGE, Tally, TopImages, image_labels
from app.engine.analyses.dissection.tiles import TileStage, strip_path
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
from app.engine.runtime.recorder import ActivationRecorder, discover_layers, truncated_forward

TALLY_THREADS = 2  # threads tallying the images of a batch (the dev box's two cores)


@contextlib.contextmanager
def _tally_pool() -> Iterator[ThreadPoolExecutor]:
    """TALLY_THREADS threads whose torch ops each run on one OpenMP thread: the images of a
    batch are spread over them already, and an OpenMP team per op on top (two threads each,
    on two cores) cost 15 % of pass 2 in wake-ups. A thread's `set_num_threads` is also the
    default of threads started after it (the window's, a next job's): the threads are all
    started here, and that default given back before any work."""
    threads = torch.get_num_threads()
    started = threading.Barrier(TALLY_THREADS + 1)

    def start() -> None:
        try:
            # torch sets a thread's team from the default at its first call: that call
            # first, or it would undo ours once the default is given back
            torch.get_num_threads()
            torch.set_num_threads(1)
        finally:
            started.wait()  # whatever happened: the job thread waits for every thread

    with ThreadPoolExecutor(TALLY_THREADS, thread_name_prefix="tally") as pool:
        for _ in range(TALLY_THREADS):  # each blocks a thread: the next submit makes one
            pool.submit(start)
        started.wait()
        torch.set_num_threads(threads)
        yield pool


def _layer_shapes(loaded: LoadedModel, layers: Sequence[str],
                  directions: dict[str, DirectionLayer] | None = None,
                  ) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    infos, clone = discover_layers(loaded.module, loaded.preprocess.size, loaded.device,
                                   [d.set for d in (directions or {}).values()])
    by_name = {i.name: i.shape for i in infos}
    if not layers:
        raise DissectionError("no layers to dissect")
    missing = [n for n in layers if n not in by_name]
    if missing:
        raise DissectionError(f"no layer named {missing[0]!r} with a (C, H, W) output in "
                              f"{loaded.name} (see `deepvis layers`)")
    return {n: by_name[n] for n in layers}, clone


def dissect(
    loaded: LoadedModel, dataset: str | Path, layers: Sequence[str], *,
    quantile: float = 0.005, min_iou: float = 0.04, categories: Sequence[str] | None = None,
    batch_size: int = 32, workers: int = 2, cache_dir: str = "", out: str | Path | None = None,
    top_k: int = 4, bins: int = 4096, checkpoint_every: int = 20,
    max_pixels: int = 80_000_000, resume: bool = True, mp_context: str | None = None,
    ranks: Ranks | None = None, spool_gb: float = 4.0,
) -> Job[PassProgress, DissectionResult]:
    """Label every unit of `layers` with a concept of `dataset`; see the module doc.

    With `ranks` (torchrun) each rank takes its batches of both passes and rank 0 merges
    (sketches and top images between the passes, tallies at the end) and writes the one
    result; the other ranks return a result without layers.

    `spool_gb`: the disk pass 1 may fill with unit maps so that the network runs once
    (`spool`); a dataset that needs more (or 0) runs the network twice. Same result.
    """
    started = time.perf_counter()
    if not 0.0 < quantile < 1.0:
        raise DissectionError(f"quantile must be between 0 and 1, got {quantile}")
    if not 0.0 <= min_iou <= 1.0:
        raise DissectionError(f"min IoU must be between 0 and 1, got {min_iou}")
    if (batch_size <= 0 or workers < 0 or top_k < 0 or bins < 16 or checkpoint_every <= 0
            or not spool_gb >= 0):
        raise DissectionError("batch size and checkpoint interval must be positive, "
                              "workers, top-k and spool size not negative, bins at least 16")
    pre = loaded.preprocess
    concepts = find_concepts(dataset, tuple(categories) if categories else None,
                             label_side=max(1, pre.size // 2))
    layers = list(dict.fromkeys(layers))
    if ranks is not None:  # before anything is read from or written to the cache
        ranks.agree({
            "model weights": model_key(loaded), "dataset listing": f"{len(concepts.files)} "
            f"files under {concepts.root} ({files_fingerprint(concepts.files)})",
            "concepts": f"{concepts.kind} {list(concepts.categories)}", "layers": layers,
            "quantile": quantile, "min IoU": min_iou, "bins": bins, "top_k": top_k,
            "batch size": batch_size, "max pixels": max_pixels})
    try:  # a concept layer (`L@nmf32`): its concept maps are dissected as unit maps
        directions = direction_layers(loaded, layers, cache_dir)
    except UnknownDirectionLayer as exc:
        raise DissectionError(str(exc)) from None
    shapes, clone = _layer_shapes(loaded, layers, directions)
    digest_doc: list[Any] = [
        model_key(loaded), CACHE_FORMAT, DISSECT_FORMAT, files_fingerprint(concepts.files),
        concepts.kind, concepts.categories, quantile, bins, top_k, max_pixels]
    if directions:  # a relearned dictionary is another layer
        digest_doc.append(sorted(str(d.set.folder) for d in directions.values()))
    digest = hashlib.sha256(json.dumps(digest_doc).encode()).hexdigest()[:16]
    folder = Path(out) if out is not None else (
        cache_root(cache_dir) / model_key(loaded) / "dissect" / digest)
    todo = [n for n in layers if not resume or not _layer_done(folder, n, digest)]
    if ranks is not None:  # rank 0's cache decides: on other hosts it is not there
        todo = ranks.broadcast(todo)
    resumed = False
    rate = 0.0
    resumed_at = (0, 0)
    if todo:
        with failing_together(ranks):
            if out is None:  # before the work whose checkpoints and result it will hold
                writable_cache(cache_dir)
            resumed, rate, resumed_at = yield from _compute(
                loaded, concepts, todo, shapes, clone, folder, digest, quantile=quantile,
                batch_size=batch_size, workers=workers, top_k=top_k, bins=bins,
                checkpoint_every=checkpoint_every, max_pixels=max_pixels, resume=resume,
                mp_context=mp_context, ranks=ranks, directions=directions,
                spool_gb=spool_gb)
    if ranks is not None and not ranks.is_root:
        return DissectionResult(loaded.name, concepts.root, concepts.kind, concepts.categories,
                                quantile, min_iou, 0, (), {}, folder.as_posix(),
                                time.perf_counter() - started, rate, not todo, resumed, bins,
                                resumed_at)
    result = load_result(folder, layers, min_iou)
    result = DissectionResult(
        loaded.name, concepts.root, concepts.kind, concepts.categories, quantile, min_iou,
        result.images, result.skipped, result.layers, folder.as_posix(),
        time.perf_counter() - started, rate, not todo, resumed, bins, resumed_at)
    # the document the window and the catalogue read (`cached_layer`: the newest wins)
    cache_write_json(folder / "result.json", result.to_json(), items=result.images,
                     what=f"dissection of {', '.join(layers)}")
    return result


def unreadable_message(files: int, root: str, skipped: Sequence[tuple[str, str]]) -> str:
    """The one line for a dataset none of whose images could be decoded."""
    example = f" (e.g. {skipped[0][1]})".splitlines()[0] if skipped else ""
    return f"none of the {files} images under {root} could be read{example}"


def _layer_done(folder: Path, layer: str, digest: str) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / safe_filename(layer) / "tally.npz") as z:
            return meta.get("digest") == digest and str(z["digest"]) == digest
    except (OSError, ValueError, KeyError):
        return False


# -- the two passes ----------------------------------------------------------------------------


def _compute(
    loaded: LoadedModel, concepts: Concepts, todo: list[str], shapes: dict[str, tuple[int, ...]],
    clone: set[str], folder: Path, digest: str, *, quantile: float, batch_size: int,
    workers: int, top_k: int, bins: int, checkpoint_every: int, max_pixels: int,
    resume: bool, mp_context: str | None, ranks: Ranks | None = None,
    directions: dict[str, DirectionLayer] | None = None, spool_gb: float = 0.0,
) -> Job[PassProgress, tuple[bool, float, tuple[int, int]]]:
    """Both passes over the dataset for the layers `todo`; stores their tallies in `folder`.
    Returns (resumed from a checkpoint, images per second over what ran now, where this
    process resumed: (pass, images of that pass an earlier run had done), or (0, 0))."""
    t0 = time.perf_counter()
    device, pre, model = loaded.device, loaded.preprocess, loaded.module
    n = len(concepts.items)
    # a rank takes whole batches of the single-process run: rank, rank + N, …
    mine = list(range(n)) if ranks is None else ranks.positions(n, batch_size)
    # "labels spooled": checkpoints of runs whose chunks held maps only are not resumed
    key_doc: list[Any] = [digest, todo, batch_size, "labels spooled"]
    if ranks is not None:
        key_doc += ["rank", ranks.rank, ranks.world]
    run_key = hashlib.sha256(json.dumps(key_doc).encode()).hexdigest()[:16]
    ckpt = folder / ".partial" / run_key
    staging = ckpt / "tiles"
    spool = Spool(ckpt / "spool", todo, mine, batch_size)
    pixels = max((it.sh * it.sw or MAX_MASK_SIDE**2 for it in concepts.items), default=0)
    fits = spool_gb > 0 and spool_bytes(
        len(mine), [shapes[m] for m in todo],
        label_bytes=label_bytes(pixels, len(concepts.categories))) <= spool_gb * 1e9
    sketches = {name: QuantileSketch(shapes[name][0], device, bins) for name in todo}
    tops = {name: TopImages(shapes[name][0], top_k, device) for name in todo}
    tallies: dict[str, Tally] = {}
    stage, done, skipped = 1, 0, []
    label_px = np.zeros(concepts.labels, np.int64)
    limits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    saved = load_checkpoint(ckpt) if resume else None
    if saved and saved[0].get("stage") == 2 and saved[0].get("spool") and not spool.complete(
            spool.batches):
        saved = None  # pass 2 would read unit maps that are gone: start again
    if saved is None:
        shutil.rmtree(ckpt, ignore_errors=True)  # tiles of a run whose state was lost
    else:
        doc, arrays = saved
        stage, done, skipped = doc["stage"], doc["done"], [tuple(s) for s in doc["skipped"]]
        for i, name in enumerate(todo):
            tops[name].load({k: arrays[f"{i}.top.{k}"] for k in ("values", "ids")})
            if stage == 1:
                sketches[name].load({k: arrays[f"{i}.sketch.{k}"]
                                     for k in ("exp", "offset", "counts")})
            else:
                limits[name] = (arrays[f"{i}.threshold"], arrays[f"{i}.error"])
                tallies[name] = Tally(shapes[name][0], concepts.labels,
                                      len(concepts.categories), limits[name][0], device)
                tallies[name].load({k: arrays[f"{i}.{k}"] for k in ("both", "unit_cat")})
        if stage == 2:
            label_px = arrays["label_px"]
    # pass 1 spools only if it has from the first batch on; pass 2 reads what pass 1 chose
    spooling = bool(saved[0].get("spool")) if saved and stage == 2 else (
        fits and spool.complete(done))
    resumed = saved is not None and (stage, done) != (1, 0)
    resumed_at = (stage, min(done * batch_size, len(mine))) if resumed else (0, 0)
    skipped1 = {s[0] for s in skipped} if stage == 2 else set()

    # pass 1 folds a batch into the sketches, top images and spool on a tally thread while
    # the network runs the next batch; `settle` waits for it (and re-raises its error)
    pending: list[Future[None]] = []
    fold_failed = False

    def settle() -> None:
        nonlocal fold_failed
        while pending:
            try:
                pending.pop().result()
            except BaseException:
                fold_failed = True  # that batch is half folded: nothing to checkpoint
                raise

    def fold(b: int, batch: dict[str, Any], maps: dict[str, torch.Tensor]) -> None:
        if maps:
            ids = torch.tensor(batch["ids"], dtype=torch.int64)
            for name in todo:
                sketches[name].add(maps[name])
                tops[name].add(maps[name], ids)
        if spooling:  # before the checkpoint that counts this batch (it settles first)
            spool.write(b, batch["ids"], {
                m: maps[m] if maps else torch.empty(0, *shapes[m]) for m in todo},
                batch["labels"], batch["label_errors"])

    def checkpoint() -> None:
        settle()
        arrays: dict[str, np.ndarray] = {}
        for i, name in enumerate(todo):
            arrays.update({f"{i}.top.{k}": v for k, v in tops[name].state().items()})
            if stage == 1:
                arrays.update({f"{i}.sketch.{k}": v for k, v in sketches[name].state().items()})
            else:
                arrays[f"{i}.threshold"], arrays[f"{i}.error"] = limits[name]
                arrays.update({f"{i}.{k}": v for k, v in tallies[name].state().items()})
        if stage == 2:
            arrays["label_px"] = label_px
        save_checkpoint(ckpt, {"stage": stage, "done": done, "skipped": skipped,
                               "spool": spooling}, arrays)

    already = (len(mine) if stage == 2 else 0) + min(done * batch_size, len(mine))
    meter = Meter(2 * len(mine), already, already if resumed else 0)
    computed = 0
    with (torch.no_grad(), ActivationRecorder(model, todo, directions) as rec,
          _tally_pool() as pool):
        rec.clone_layers |= clone & set(todo)
        forward, unhook = truncated_forward(model, rec, todo)
        last_saved, dirty = done, False
        try:
            if stage == 1:
                for batch in _batches(concepts, mine, pre, max_pixels, SPOOL if spooling
                                      else False, frozenset(), done, batch_size, workers,
                                      mp_context):
                    dirty = True
                    maps: dict[str, torch.Tensor] = {}
                    if batch["images"]:
                        rec.run(normalize(batch["images"], pre, device), forward)
                        maps = {m: rec.activations[m] for m in todo}
                    settle()  # the last batch's fold, which ran beside this forward
                    pending.append(pool.submit(fold, done, batch, maps))
                    skipped += [(concepts.items[i].image, e) for i, e in batch["failed"]]
                    done, dirty = done + 1, False
                    computed += len(batch["images"])
                    if done - last_saved >= checkpoint_every:
                        checkpoint()
                        last_saved = done
                    yield meter.update("thresholds", len(batch["ids"]) + len(batch["failed"]),
                                     len(skipped))
                settle()
                if ranks is None:
                    for name in todo:
                        limits[name] = sketches[name].quantile(1.0 - quantile)
                else:
                    skipped = merge_first_pass(ranks, todo, sketches, tops, skipped, limits,
                                                quantile)
                for name in todo:
                    tallies[name] = Tally(shapes[name][0], concepts.labels,
                                          len(concepts.categories), limits[name][0], device)
                skipped1 = {s[0] for s in skipped}
                if len(skipped1) >= n:  # nothing to threshold: an error, never a result
                    last_saved = done  # and no checkpoint of nothing
                    shutil.rmtree(ckpt, ignore_errors=True)
                    with contextlib.suppress(OSError):
                        (folder / ".partial").rmdir()  # unless another run's is in it
                    raise DissectionError(unreadable_message(n, concepts.root, skipped))
                spooling = spooling and spool.complete(spool.batches)
                if ranks is not None:  # one way for all: pass 2 splits the images by it
                    spooling = int(ranks.sum(torch.tensor([int(not spooling)]))[0]) == 0
                if not spooling:
                    shutil.rmtree(spool.folder, ignore_errors=True)
                stage, done, last_saved = 2, 0, 0
                sketches.clear()  # the thresholds are all pass 2 needs
                checkpoint()
            # spooled: each rank tallies the images it spooled (sums: any split is exact);
            # else a second forward over the batches of the single-process pass 2
            keep = [i for i in (mine if spooling else range(n))
                    if concepts.items[i].image not in skipped1]
            if ranks is not None and not spooling:
                keep = ranks.take(keep, batch_size)
            members = _top_members(todo, tops)
            tiles = {name: TileStage(staging / safe_filename(name), shapes[name][0], top_k)
                     for name in todo}
            wanted = frozenset(i for m in members.values() for i in m)
            meter = Meter(2 * len(mine), len(mine) + min(done * batch_size, len(keep)),
                          meter.resumed_from)
            source = (_chunks(spool, done, device) if spooling else
                      _batches(concepts, keep, pre, max_pixels, True, wanted, done,
                               batch_size, workers, mp_context))
            for item in source:
                dirty = True
                if isinstance(item, Chunk):  # what pass 1 read and computed, read back
                    labels, maps = item.labels, item.maps
                    pairs = list(zip(item.ids, item.errors, strict=True))
                    ok = [i for i, e in pairs if not e]
                    failed = [(i, e) for i, e in pairs if e]  # as a second read would fail
                    batch = {"ids": ok, "images": ok, "failed": failed}
                else:
                    batch = item
                    labels, maps, failed = batch["labels"], {}, batch["failed"]
                    if batch["images"]:
                        rec.run(normalize(batch["images"], pre, device), forward)
                        maps = {m: rec.activations[m] for m in todo}

                def tally_image(job: tuple[int, Labelled],
                                maps: dict[str, torch.Tensor] = maps) -> None:
                    j, lab = job
                    matrix = image_labels(lab, device)  # once for all the layers
                    with torch.no_grad():  # grad mode is per thread
                        for name in todo:
                            fired = tallies[name].add(maps[name][j], matrix, lab.shape)
                            slots = members[name].get(lab.index, [])
                            if lab.thumb is not None and slots:  # disjoint slots per image
                                tiles[name].draw(lab.thumb, fired, slots)

                # the images of a batch on TALLY_THREADS threads: torch and numpy let go of
                # the GIL, and one thread left a core idle (no network runs in this pass)
                found = [(j, lab) for j, lab in enumerate(labels) if lab is not None]
                list(pool.map(tally_image, found))
                for _, lab in found:
                    np.add.at(label_px, lab.ids, lab.counts)
                skipped += [(concepts.items[i].image, e) for i, e in failed]
                done, dirty = done + 1, False
                computed += len(batch["images"])
                if done - last_saved >= checkpoint_every:
                    checkpoint()
                    last_saved = done
                yield meter.update("tally", len(batch["ids"]) + len(batch["failed"]), len(skipped))
        except BaseException:
            # a cancel closes the job at a yield, between batches: save what is done
            with contextlib.suppress(Exception):
                settle()  # a failed fold sets fold_failed
            if not dirty and not fold_failed and done != last_saved:
                checkpoint()
            raise
        finally:
            unhook()
    if ranks is not None:
        skipped, label_px, resumed, computed = merge_second_pass(
            ranks, todo, tallies, label_px, tiles, skipped, resumed, computed)
        if not ranks.is_root:
            ranks.check()  # rank 0 has written the result: this part is no longer needed
            shutil.rmtree(ckpt, ignore_errors=True)
            return resumed, computed / max(time.perf_counter() - t0, 1e-9), resumed_at
        with failing_together(ranks):
            _write_layers(loaded, concepts, todo, folder, digest, tiles, skipped, tops,
                          tallies, limits, label_px)
        ranks.check()
    else:
        _write_layers(loaded, concepts, todo, folder, digest, tiles, skipped, tops, tallies,
                      limits, label_px)
    shutil.rmtree(ckpt, ignore_errors=True)
    with contextlib.suppress(OSError):
        (folder / ".partial").rmdir()  # only when no other run's checkpoint is in it
    return resumed, computed / max(time.perf_counter() - t0, 1e-9), resumed_at


def _write_layers(loaded: LoadedModel, concepts: Concepts, todo: list[str], folder: Path,
                  digest: str, tiles: dict[str, TileStage], skipped: list[Any],
                  tops: dict[str, TopImages],
                  tallies: dict[str, Tally], limits: dict[str, tuple[np.ndarray, np.ndarray]],
                  label_px: np.ndarray) -> None:
    n = len(concepts.items)
    images = n - len(skipped)
    what = f"dissection of {', '.join(todo)}"
    cache_write_json(folder / "meta.json", {
        "format": DISSECT_FORMAT, "digest": digest, "kind": concepts.kind,
        "dataset": concepts.root, "names": list(concepts.names),
        "primary": list(concepts.primary), "categories": list(concepts.categories),
        "images": images, "skipped": sorted(skipped), "model": loaded.name,
        "model_key": model_key(loaded)}, items=images, what=what)
    for name in todo:
        tiles[name].write_strips(folder / safe_filename(name), tops[name].state()["ids"])
    # the strips were renamed into place unsynced; one sync makes them all durable before
    # any tally.npz (what marks a layer done) is written: one flush, not one per strip
    os.sync()
    for name in todo:
        out = folder / safe_filename(name)
        thr, err = limits[name]
        cache_write_npz(out / "tally.npz", {
            "digest": np.array(digest), "layer": np.array(name),
            **tallies[name].state(), "label_px": label_px, "threshold": thr, "error": err,
            **{f"top_{k}": v for k, v in tops[name].state().items()}}, items=images, what=what)


def _batches(concepts: Concepts, indices: Sequence[int], pre: Any, max_pixels: int,
             labels: bool | str, thumbs: frozenset[int], skip_batches: int, batch_size: int,
             workers: int, mp_context: str | None) -> Iterator[dict[str, Any]]:
    rest = list(indices)[skip_batches * batch_size:]
    ds = ConceptImages(concepts, rest, pre, max_pixels, labels, thumbs)
    yield from batches(make_loader(ds, batch_size, workers, collate, mp_context))


def _chunks(spool: Spool, start: int, device: torch.device) -> Iterator[Chunk]:
    for b in range(start, spool.batches):
        yield spool.read(b, device)


def _top_members(todo: list[str], tops: dict[str, TopImages]
                 ) -> dict[str, dict[int, list[tuple[int, int]]]]:
    """Per layer: image id → [(unit, rank)] of the units that show it among their top k."""
    out: dict[str, dict[int, list[tuple[int, int]]]] = {}
    for name in todo:
        ids = tops[name].state()["ids"]
        found: dict[int, list[tuple[int, int]]] = {}
        for unit, row in enumerate(ids):
            for rank, i in enumerate(row):
                if i != NO_IMAGE:
                    found.setdefault(int(i), []).append((unit, rank))
        out[name] = found
    return out


# -- results -----------------------------------------------------------------------------------


def load_result(folder: str | Path, layers: Sequence[str], min_iou: float) -> DissectionResult:
    """A stored dissection, labels scored at `min_iou`; DissectionError if incomplete."""
    root = Path(folder)
    try:
        meta = json.loads((root / "meta.json").read_text())
        names, cats = tuple(meta["names"]), tuple(meta["categories"])
        primary = np.asarray(meta["primary"], np.int64)
        out = {}
        for name in layers:
            sub = root / safe_filename(name)
            with np.load(sub / "tally.npz") as z:
                units = label_units(z["both"], z["unit_cat"], z["label_px"], primary, names,
                                    cats, z["threshold"], z["error"], min_iou)
            units = tuple(_with_strip(u, sub) for u in units)
            out[name] = LayerDissection(name, units, summarize(units, cats), sub.as_posix())
    except (OSError, ValueError, KeyError) as exc:
        raise DissectionError(f"no finished dissection in {root}: {exc}") from None
    return DissectionResult(meta.get("model", ""), meta["dataset"], meta["kind"], cats, 0.0,
                            min_iou, int(meta["images"]),
                            tuple((str(p), str(r)) for p, r in meta["skipped"]), out,
                            root.as_posix(), 0.0)


def _with_strip(u: Any, folder: Path) -> Any:
    from dataclasses import replace

    path = strip_path(folder, u.unit)
    return replace(u, top_images=path.as_posix()) if path is not None else u
