"""What an atlas is built from: P activation vectors per image, and the layer's logit gradient.

Samples: for each image, P positions of the layer's map drawn without replacement by a
generator seeded by (seed, image index in the folder's sorted listing) — for a transformer's
token layer, P tokens (the recorder lays tokens out as a map). So the samples depend on the
seed and the listing only, not on batches. Memory is P × C per image on the CPU: the UMAP
that follows needs them all at once anyway.

Labels need each class logit's linear response to the layer: J[k, c] = Σ_positions
∂logit_k / ∂a[c, position], averaged over images — the effect on logit k of adding a vector
to the layer at every position, to first order. A cell's label is argmax_k J[k] · direction.
J needs one backward per class (the gradient of logit k with respect to a zero vector
`delta` added by a hook to the layer's output at every position is exactly row k), so it is
computed for the candidate classes only: those among the top `classes` predictions of the
images the gradient is taken on — a label is a class the model does predict on this data.
(Forward-mode over the C channels gives all 1000 rows but cost 190 s for two images at
_blocks.5 on a loaded CPU; T backwards of one graph cost seconds.) It runs on a private copy
of the model, so no hook or graph is left on the shared one, and on the first
`gradient_images` images only, decoded again after the collection (a batch's images are
preprocessed one by one, so they are the tensors the collection saw).

The collection (`collect_rows`) checkpoints every few batches, and when cancelled, in a
folder of its own: each checkpoint adds one file of the rows gathered since the last
(`rows-<start>.npz`, so the writes grow with the folder, not with its square) and then
rewrites the small state that lists those files (`save_checkpoint`: its json and npz tied by
a token). A kill between the two leaves an unlisted file the next checkpoint overwrites. A
resumed run reads the listed files back (`allow_pickle=False`) and goes on from the first
image not done: the rows of an image depend only on (seed, image), so the rows equal an
uninterrupted run's.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from app.capture.images import ImageError, downscale_to, read_image
from app.core.atomic import atomic_write_npz
from app.core.jobs import Job, Progress
from app.engine.runtime.dataset_pass import load_checkpoint, save_checkpoint
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
from app.engine.runtime.recorder import ActivationRecorder, truncated_forward


@dataclass(frozen=True, kw_only=True)
class AtlasProgress(Progress):
    """`stage`: "collect" (images), "gradient" (images), "layout", "icons" (cells);
    `resumed_from`: the images of the collection an interrupted run had done."""

    stage: str
    resumed_from: int = 0

    def line(self) -> str:
        text = f"{self.stage:8s} {self.done}/{self.total}"
        return text + (f"  (resumed at {self.resumed_from})" if self.resumed_from else "")


def positions_of(seed: int, image: int, hw: int, per_image: int) -> np.ndarray:
    """The map positions sampled from image `image`: a function of (seed, image) only."""
    rng = np.random.default_rng([seed, image])
    return np.sort(rng.choice(hw, size=min(per_image, hw), replace=False))


def decode(path: str, max_pixels: int, max_side: int, device: torch.device
           ) -> torch.Tensor | str:
    """The image as the live view would see it, or the reason it cannot be read."""
    try:
        return frame_to_tensor(downscale_to(read_image(path, max_pixels), max_side), device)
    except ImageError as exc:
        return str(exc)
    except Exception as exc:  # a decoder crash must not end the pass
        return f"{path}: {type(exc).__name__}: {exc}"


def batches(loaded: LoadedModel, files: Sequence[str], batch_size: int, max_pixels: int,
            max_side: int, skipped: list[tuple[str, str]]
            ) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(image indices, preprocessed batch) over `files`; unreadable ones go to `skipped`."""
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(files), batch_size):
            chunk = list(range(start, min(start + batch_size, len(files))))
            decoded = list(pool.map(
                lambda i: decode(files[i], max_pixels, max_side, loaded.device), chunk))
            skipped += [(files[i], t) for i, t in zip(chunk, decoded, strict=True)
                        if isinstance(t, str)]
            ok = [(i, t) for i, t in zip(chunk, decoded, strict=True)
                  if isinstance(t, torch.Tensor)]
            yield [i for i, _ in ok], (prepare_batch([t for _, t in ok], loaded.preprocess)
                                       if ok else torch.zeros(0))


def sample_batch(rec: ActivationRecorder, forward: Any, layer: str, x: torch.Tensor,
                 ids: Sequence[int], per_image: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(rows (n, C), image index of each row, map shape) for one batch."""
    rec.run(x, forward)
    acts = rec.activations[layer].detach().float()
    n, c, h, w = acts.shape
    flat = acts.reshape(n, c, h * w).cpu().numpy()
    rows, owners = [], []
    for k, image in enumerate(ids):
        pos = positions_of(seed, image, h * w, per_image)
        rows.append(flat[k][:, pos].T)
        owners.append(np.full(pos.size, image, dtype=np.int64))
    return np.concatenate(rows), np.concatenate(owners), (h, w)


def recorder_for(loaded: LoadedModel, layer: str, clone: bool
                 ) -> tuple[ActivationRecorder, Any, Any]:
    rec = ActivationRecorder(loaded.module, [layer])
    if clone:
        rec.clone_layers.add(layer)
    rec.__enter__()
    forward, unhook = truncated_forward(loaded.module, rec, [layer])
    return rec, forward, unhook


def logit_jacobian(model: nn.Module, layer: str, x: torch.Tensor, channels: int,
                   classes: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(class ids (T,), J (T, C)): Σ over the batch's images and positions of
    ∂logit_k/∂a[c], for the T classes among the batch's top `classes` (module doc).

    `model` must be a private copy: a hook is put on it for the call's duration."""
    module = model.get_submodule(layer.partition(":")[0])
    delta = torch.zeros(channels, device=x.device, requires_grad=True)

    def add_delta(_m: nn.Module, _i: Any, out: Any) -> Any:
        if not isinstance(out, torch.Tensor):
            return out
        if out.dim() == 4 and out.shape[1] == channels:
            return out + delta[None, :, None, None]
        if out.shape[-1] == channels:  # tokens (N, T, C), channels-last maps (Swin)
            return out + delta
        raise ValueError(f"layer {layer}: output {tuple(out.shape)} has no axis of "
                         f"{channels} channels")

    handle = module.register_forward_hook(add_delta)
    try:
        with torch.enable_grad():
            logits = model(x).float()
            top = torch.topk(logits.detach(), min(classes, logits.shape[1]), dim=1).indices
            ids = torch.unique(top)
            rows = [torch.autograd.grad(logits[:, int(k)].sum(), delta, retain_graph=True)[0]
                    for k in ids]
    finally:
        handle.remove()
    return ids.cpu().numpy(), torch.stack(rows).detach().cpu().numpy()


def private_copy(loaded: LoadedModel) -> nn.Module:
    """The model, deep-copied: hooks and autograd on it never touch the shared one."""
    model = copy.deepcopy(loaded.module).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass(frozen=True)
class Collected:
    """One process's (or rank's) part of the collection."""

    rows: np.ndarray  # (n, C) float32, by image index, then position
    owner: np.ndarray  # (n,) int64: each row's image index in the folder's listing
    images: int  # images read
    skipped: tuple[tuple[str, str], ...]  # (path, reason)


def collect_rows(
    loaded: LoadedModel, files: Sequence[str], todo: Sequence[int], layer: str, clone: bool,
    channels: int, ckpt: Path, *, per_image: int, seed: int, batch_size: int,
    max_pixels: int, max_side: int, checkpoint_every: int = 10, resume: bool = True,
) -> Job[AtlasProgress, Collected]:
    """P rows of each image of `files` at `todo` (whole batches of the single-process run),
    checkpointed in `ckpt` (module doc); `resume=False` throws a checkpoint away."""
    rows: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    chunks: list[str] = []
    pos, images, skipped = 0, 0, list[tuple[str, str]]()
    saved = load_checkpoint(ckpt) if resume else None
    if saved is not None:
        try:
            for name in saved[0]["chunks"]:
                with np.load(ckpt / str(name), allow_pickle=False) as z:
                    rows.append(z["rows"])
                    owners.append(z["owner"])
            chunks = [str(n) for n in saved[0]["chunks"]]
            pos, images = int(saved[0]["done"]), int(saved[0]["images"])
            skipped = [(str(p), str(r)) for p, r in saved[0]["skipped"]]
        except (OSError, ValueError, KeyError, TypeError, EOFError):
            saved = None  # a listed file is gone or torn: start over
            rows, owners, chunks, pos, images, skipped = [], [], [], 0, 0, []
    if saved is None:
        shutil.rmtree(ckpt, ignore_errors=True)
    resumed_from, last_saved, fresh = pos, pos, len(rows)

    def checkpoint() -> None:
        nonlocal last_saved, fresh
        if pos == last_saved:
            return
        name = f"rows-{last_saved:09d}.npz"
        atomic_write_npz(ckpt / name, {"rows": _stack(rows[fresh:], channels),
                                       "owner": _owners(owners[fresh:])})
        chunks.append(name)
        save_checkpoint(ckpt, {"done": pos, "images": images, "skipped": skipped,
                               "chunks": chunks}, {})
        last_saved, fresh = pos, len(rows)

    rest = list(todo[pos:])
    rec, forward, unhook = recorder_for(loaded, layer, clone)
    dirty = False  # a batch read but not yet counted: a checkpoint now would be torn
    try:
        yield AtlasProgress(done=pos, total=len(todo), stage="collect",
                            resumed_from=resumed_from)
        with torch.no_grad():
            for local, x in batches(loaded, [files[i] for i in rest], batch_size, max_pixels,
                                    max_side, skipped):
                dirty = True
                ids = [rest[k] for k in local]
                if ids:
                    r, o, _ = sample_batch(rec, forward, layer, x, ids, per_image, seed)
                    rows.append(r.astype(np.float32))
                    owners.append(o)
                    images += len(ids)
                pos, dirty = min(len(todo), pos + batch_size), False
                if pos - last_saved >= checkpoint_every * batch_size:
                    checkpoint()
                # a cancel closes the job here: the except below checkpoints
                yield AtlasProgress(done=pos, total=len(todo), stage="collect",
                                    resumed_from=resumed_from)
        checkpoint()  # all of it: a run killed while laying out does not collect again
    except BaseException:
        if not dirty:
            checkpoint()
        raise
    finally:
        unhook()
        rec.remove()
    return Collected(_stack(rows, channels), _owners(owners), images, tuple(skipped))


def _stack(rows: list[np.ndarray], channels: int) -> np.ndarray:
    return (np.concatenate(rows).astype(np.float32) if rows
            else np.zeros((0, channels), np.float32))


def _owners(owners: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(owners).astype(np.int64) if owners else np.zeros(0, np.int64)
