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
`gradient_images` images only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from app.capture.images import ImageError, downscale_to, read_image
from app.core.jobs import Progress
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
from app.engine.runtime.recorder import ActivationRecorder, truncated_forward


@dataclass(frozen=True, kw_only=True)
class AtlasProgress(Progress):
    """`stage`: "collect" (images), "gradient" (images), "layout", "icons" (cells)."""

    stage: str

    def line(self) -> str:
        return f"{self.stage:8s} {self.done}/{self.total}"


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
