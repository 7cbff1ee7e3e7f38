"""The samples a dictionary is learned from: a layer's activation vectors over a folder.

Every spatial position of the layer's map is a sample (for a transformer's token layer, every
patch token: the recorder lays tokens out as a map, `runtime.layout`), a C-vector. A folder
of 10,000 images at 14 × 14 gives two million of them; the factorizations need far fewer, so
a fixed `budget` is kept and memory is flat in the folder's size.

Which ones: a priority reservoir. Each position gets a random 63-bit key drawn from a
generator seeded by (seed, image index) — the index in the folder's sorted listing — and the
`budget` positions with the smallest keys (ties by image, then position) are kept. That is a
uniform sample without replacement of all positions, and it depends only on the seed and the
listing: not on the batch size, on the order batches arrive, or on where a run was killed.
The reservoir is (budget × C) on the device plus one batch's candidates.

Images are decoded by two threads (OpenCV releases the GIL), downscaled like a live frame
to `max_side` and preprocessed as the live view does; the forward stops at the layer
(`truncated_forward`). Unreadable files are skipped and listed, never fatal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from app.capture.images import ImageError, downscale_to, read_image
from app.core.atomic import atomic_write_json, atomic_write_npz
from app.core.jobs import Job, Progress
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
from app.engine.runtime.recorder import ActivationRecorder, truncated_forward

KEY_LIMIT = 1 << 63


@dataclass(frozen=True, kw_only=True)
class ConceptProgress(Progress):
    """Progress of learning a dictionary: `stage` "collect" (images), then "nmf"/"sae"."""

    stage: str
    error: float | None = None  # the fit's current relative error (nmf) or loss (sae)

    def line(self) -> str:
        unit = "images" if self.stage == "collect" else "steps"
        text = f"{self.stage:7s} {self.done}/{self.total} {unit}"
        return text + (f"  error {self.error:.4f}" if self.error is not None else "")


class SampleReservoir:
    """The `budget` samples with the smallest keys seen so far, on `device`."""

    def __init__(self, budget: int, channels: int, seed: int, device: torch.device) -> None:
        self.budget, self.seed = budget, seed
        self.keys = torch.zeros(0, dtype=torch.int64, device=device)
        self.tags = torch.zeros(0, dtype=torch.int64, device=device)  # image · HW + position
        self.rows = torch.zeros(0, channels, device=device)

    def position_keys(self, image: int, positions: int) -> np.ndarray:
        """The keys of one image's positions: a function of (seed, image index) only."""
        rng = np.random.default_rng([self.seed, image])
        return rng.integers(0, KEY_LIMIT, size=positions, dtype=np.int64)

    def offer(self, acts: torch.Tensor, ids: Sequence[int]) -> None:
        """Consider every position of `acts` (N, C, H, W), the maps of images `ids`."""
        n, c, h, w = acts.shape
        hw = h * w
        keys = torch.from_numpy(np.concatenate([self.position_keys(i, hw) for i in ids]))
        tags = (torch.tensor(list(ids), dtype=torch.int64)[:, None] * hw
                + torch.arange(hw)[None, :]).reshape(-1)
        rows = acts.detach().float().reshape(n, c, hw).transpose(1, 2).reshape(n * hw, c)
        self._merge(keys, tags, rows)

    def absorb(self, state: dict[str, np.ndarray]) -> None:
        """Fold in the `state()` of a reservoir (same seed) that saw other images: the
        result is the reservoir of all of them (the smallest keys of a union are the
        smallest of the parts' smallest), as ranks that split a folder need."""
        self._merge(*(torch.from_numpy(state[n]) for n in ("keys", "tags", "rows")))

    def _merge(self, keys: torch.Tensor, tags: torch.Tensor, rows: torch.Tensor) -> None:
        dev = self.keys.device
        if self.keys.numel() >= self.budget:
            # once full, a candidate above the largest kept key can never get in: most of a
            # big folder's positions are dropped here, before any sorting or copying
            fits = keys <= int(self.keys.max())
            keys, tags = keys[fits], tags[fits]
            rows = rows[fits.to(rows.device)]
        all_keys = torch.cat([self.keys, keys.to(dev)])
        all_tags = torch.cat([self.tags, tags.to(dev)])
        by_tag = torch.argsort(all_tags, stable=True)
        order = by_tag[torch.argsort(all_keys[by_tag], stable=True)][: self.budget]
        self.keys, self.tags = all_keys[order], all_tags[order]
        self.rows = torch.cat([self.rows, rows.to(dev)])[order]

    def matrix(self) -> torch.Tensor:
        """The kept samples (n × C), in the order of their tags (image, then position)."""
        return self.rows[torch.argsort(self.tags)]

    def state(self) -> dict[str, np.ndarray]:
        return {"keys": self.keys.cpu().numpy(), "tags": self.tags.cpu().numpy(),
                "rows": self.rows.cpu().numpy()}

    def load(self, state: dict[str, np.ndarray]) -> None:
        dev = self.keys.device
        self.keys = torch.from_numpy(state["keys"]).to(dev)
        self.tags = torch.from_numpy(state["tags"]).to(dev)
        self.rows = torch.from_numpy(state["rows"]).to(dev)


@dataclass(frozen=True)
class Samples:
    """What the collection gives the fit: the kept samples and how they were drawn."""

    reservoir: SampleReservoir  # its `matrix()`: (n, C) raw activations, signed if the layer is
    images: int  # images read (files less the skipped)
    skipped: tuple[tuple[str, str], ...]  # (path, reason)
    map_shape: tuple[int, int]

    def doc(self) -> dict:
        return {"images": self.images, "skipped": [list(s) for s in self.skipped],
                "map_shape": list(self.map_shape)}

    def save(self, folder: Path) -> None:
        """As a finished collection in `folder` (what `collect_samples` returns at once)."""
        save_state(folder, "samples", {"done": -1, **self.doc()}, self.reservoir.state())


# -- checkpoints: a token ties the npz to its json, so a half-replaced pair is ignored ---------


def save_state(folder: Path, name: str, doc: dict, arrays: dict[str, np.ndarray]) -> None:
    token = os.urandom(8).hex()
    atomic_write_npz(folder / f"{name}.npz", {"token": np.array(token), **arrays})
    atomic_write_json(folder / f"{name}.json", {**doc, "token": token})


def load_state(folder: Path, name: str) -> tuple[dict, dict[str, np.ndarray]] | None:
    try:
        doc = json.loads((folder / f"{name}.json").read_text())
        with np.load(folder / f"{name}.npz", allow_pickle=False) as z:
            if str(z["token"]) != doc.get("token"):
                return None
            return doc, {k: z[k] for k in z.files if k != "token"}
    except (OSError, ValueError, KeyError, EOFError):
        return None


# -- the pass over the folder ---------------------------------------------------------------------


def _decode(path: str, max_pixels: int, max_side: int, device: torch.device
            ) -> torch.Tensor | str:
    try:
        return frame_to_tensor(downscale_to(read_image(path, max_pixels), max_side), device)
    except ImageError as exc:
        return str(exc)
    except Exception as exc:  # a decoder crash must not end the pass either
        return f"{path}: {type(exc).__name__}: {exc}"


def collect_samples(
    loaded: LoadedModel, files: Sequence[str], layer: str, clone: bool, channels: int,
    folder: Path, *, budget: int, seed: int, batch_size: int, max_pixels: int, max_side: int,
    checkpoint_every: int = 10, ids: Sequence[int] | None = None,
) -> Job[ConceptProgress, Samples]:
    """Stream `files` (those at `ids`, all when None) through the model to `layer` and keep
    `budget` samples (module doc). A sample's image index is its index in `files`.

    `folder` holds the checkpoint ("partial") while running and the finished samples
    ("samples") after; a finished folder is returned at once, a partial one resumed.
    """
    todo = list(range(len(files))) if ids is None else list(ids)
    device = loaded.device
    reservoir = SampleReservoir(budget, channels, seed, device)
    done = load_state(folder, "samples")
    if done is not None:
        reservoir.load(done[1])
        doc = done[0]
        return Samples(reservoir, doc["images"], tuple(map(tuple, doc["skipped"])),
                       tuple(doc["map_shape"]))
    partial = load_state(folder, "partial")
    start, images, skipped, shape = 0, 0, [], (0, 0)
    if partial is not None:
        reservoir.load(partial[1])
        start, images = partial[0]["done"], partial[0]["images"]
        skipped = [(str(p), str(r)) for p, r in partial[0]["skipped"]]
        shape = tuple(partial[0]["map_shape"])

    def checkpoint(name: str, upto: int) -> None:
        save_state(folder, name, {"done": upto, "images": images, "skipped": skipped,
                                  "map_shape": list(shape)}, reservoir.state())

    yield ConceptProgress(done=start, total=len(todo), stage="collect")
    model, pos, last_saved = loaded.module, start, start
    with (torch.no_grad(), ActivationRecorder(model, [layer]) as rec,
          ThreadPoolExecutor(2) as pool):
        if clone:
            rec.clone_layers.add(layer)
        forward, unhook = truncated_forward(model, rec, [layer])
        try:
            while pos < len(todo):
                chunk = todo[pos:pos + batch_size]
                decoded = list(pool.map(
                    lambda i: _decode(files[i], max_pixels, max_side, device), chunk))
                ok = [(i, t) for i, t in zip(chunk, decoded, strict=True)
                      if isinstance(t, torch.Tensor)]
                skipped += [(files[i], t) for i, t in zip(chunk, decoded, strict=True)
                            if isinstance(t, str)]
                if ok:
                    rec.run(prepare_batch([t for _, t in ok], loaded.preprocess), forward)
                    acts = rec.activations[layer]
                    reservoir.offer(acts, [i for i, _ in ok])
                    shape = (int(acts.shape[2]), int(acts.shape[3]))
                    images += len(ok)
                pos += len(chunk)
                if pos - last_saved >= checkpoint_every * batch_size:
                    checkpoint("partial", pos)
                    last_saved = pos
                # a cancel closes the generator here: the except below checkpoints
                yield ConceptProgress(done=pos, total=len(todo), stage="collect")
        except BaseException:
            if pos > last_saved:
                checkpoint("partial", pos)
            raise
        finally:
            unhook()
    checkpoint("samples", pos)
    (folder / "partial.npz").unlink(missing_ok=True)
    (folder / "partial.json").unlink(missing_ok=True)
    return Samples(reservoir, images, tuple(skipped), shape)
