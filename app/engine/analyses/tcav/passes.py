"""The two passes over images that TCAV needs: activations, and a class's gradients.

Activations. One vector per image per layer: the layer's map averaged over positions. Kim
et al. flatten the whole C·H·W map into the classifier's input, and so does captum, which
then runs out of memory with many layers or big maps (captum #930). The spatial mean keeps
a CAV a C-vector — a direction of the layer, usable as a unit elsewhere in the app (a
direction layer, the CAV · activation map per position) — and the classifier small enough
to train on the device in milliseconds. Images stream through the live model as a scan does
(two decoding threads, downscaled like a live frame, preprocessed as the live view does,
the forward stopped at the highest layer: `truncated_forward`); unreadable files are
skipped and listed.

Gradients. The TCAV score asks whether the class logit grows when the layer's activation
moves along the CAV: the directional derivative ∇_z logit · v. With the activation taken
as the spatial mean, moving the mean by ε·v means moving every position by ε·v, so the
derivative is Σ_p ∇_{z_p} logit · v = (Σ_p ∇_{z_p} logit) · v. `class_gradients` keeps
exactly that: per image and layer, the logit's gradient summed over positions (N, C), from
which every CAV's derivatives are one product. It runs on a private copy of the model
(`private_copy`: no hooks, the live model untouched) with a forward hook per layer that
lets the map flow on as a clone (in-place ops above it never touch what is differentiated);
the lowest layer's map is a leaf, so autograd records nothing below it, and one backward
per batch gives every layer's gradient at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from app.capture.images import ImageError, downscale_to, read_image
from app.core.jobs import Job, Progress
from app.engine.runtime.layout import as_map, from_map, input_size, layout_of, split_part
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
from app.engine.runtime.recorder import ActivationRecorder, split_layer_name, truncated_forward
from app.engine.runtime.truncate import private_copy


@dataclass(frozen=True, kw_only=True)
class TcavProgress(Progress):
    """`stage`: "activations" (images), "cavs" (CAVs fitted), "gradients" (images)."""

    stage: str

    def line(self) -> str:
        unit = "CAVs" if self.stage == "cavs" else "images"
        return f"{self.stage:11s} {self.done}/{self.total} {unit}"


@dataclass(frozen=True)
class ImageSettings:
    batch_size: int = 16
    max_pixels: int = 80_000_000
    max_side: int = 1280


def _decode(path: str, s: ImageSettings, device: torch.device) -> torch.Tensor | str:
    try:
        return frame_to_tensor(downscale_to(read_image(path, s.max_pixels), s.max_side), device)
    except ImageError as exc:
        return str(exc)
    except Exception as exc:  # a decoder crash must not end the pass either
        return f"{path}: {type(exc).__name__}: {exc}"


def _batches(files: Sequence[str], s: ImageSettings, device: torch.device, pool: Any,
             skipped: list[tuple[str, str]]
             ) -> Any:
    """(positions in `files`, decoded images) per batch; unreadable ones go to `skipped`."""
    for start in range(0, len(files), s.batch_size):
        chunk = list(range(start, min(len(files), start + s.batch_size)))
        decoded = list(pool.map(lambda i: _decode(files[i], s, device), chunk))
        skipped += [(files[i], t) for i, t in zip(chunk, decoded, strict=True)
                    if isinstance(t, str)]
        ok = [(i, t) for i, t in zip(chunk, decoded, strict=True) if isinstance(t, torch.Tensor)]
        yield start + len(chunk), [i for i, _ in ok], [t for _, t in ok]


@dataclass(frozen=True)
class FolderActivations:
    """Spatial-mean activations of the readable files: `rows[layer]` (n, C) on the device,
    row k being the image `files[kept[k]]`."""

    kept: tuple[int, ...]
    rows: dict[str, torch.Tensor]
    skipped: tuple[tuple[str, str], ...]

    def of(self, layer: str, positions: Sequence[int]) -> torch.Tensor:
        """The rows of those of `positions` (indices into the files) that were readable."""
        where = {p: k for k, p in enumerate(self.kept)}
        picked = [where[p] for p in positions if p in where]
        return self.rows[layer][torch.as_tensor(picked, dtype=torch.long,
                                                device=self.rows[layer].device)]


def folder_activations(loaded: LoadedModel, files: Sequence[str], layers: Sequence[str],
                       clone: set[str], s: ImageSettings, stage: str, done: int, total: int
                       ) -> Job[TcavProgress, FolderActivations]:
    """Spatial-mean activations of `files` at `layers` (module doc); progress counts from
    `done` of `total` images."""
    device = loaded.device
    kept: list[int] = []
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    skipped: list[tuple[str, str]] = []
    with (torch.no_grad(), ActivationRecorder(loaded.module, layers) as rec,
          ThreadPoolExecutor(2) as pool):
        rec.clone_layers |= clone & set(layers)
        forward, unhook = truncated_forward(loaded.module, rec, layers)
        try:
            for upto, ids, images in _batches(files, s, device, pool, skipped):
                if images:
                    rec.run(prepare_batch(images, loaded.preprocess), forward)
                    for name in layers:
                        parts[name].append(rec.activations[name].float().mean((2, 3)))
                    kept += ids
                yield TcavProgress(done=done + upto, total=total, stage=stage)
        finally:
            unhook()
    rows = {name: torch.cat(p) if p else torch.zeros(0, 0, device=device)
            for name, p in parts.items()}
    return FolderActivations(tuple(kept), rows, tuple(skipped))


def _logits(output: Any) -> torch.Tensor:
    if isinstance(output, tuple | list) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        raise ValueError("the model must output (N, classes) logits")
    return output


def _hook_layers(model: nn.Module, layers: Sequence[str], input_hw: tuple[int, int] | None,
                 caught: dict[str, torch.Tensor]) -> list[Any]:
    """Forward hooks that pass each layer's map on as a clone and keep it in `caught`."""
    by_module: dict[str, list[tuple[int, str, str]]] = {}
    for layer in layers:
        name, call = split_layer_name(layer)
        by_module.setdefault(name, []).append((call, split_part(layer)[1], layer))
    handles = []
    for name, wanted in by_module.items():
        seen = [0]  # the module's map outputs so far, counted as the recorder counts them

        def hook(m: nn.Module, _inputs: Any, out: Any,
                 wanted: list[tuple[int, str, str]] = wanted, seen: list[int] = seen) -> Any:
            layout = layout_of(out, m, input_hw)
            if layout is None:
                return None
            call = seen[0]
            seen[0] += 1
            current = out
            for k, part, layer in wanted:
                if k != call or layer in caught or (part and not layout.prefix):
                    continue
                view = as_map(current, layout, part)
                # the lowest layer (nothing below it needs a gradient) becomes a leaf
                z = view if view.requires_grad else view.detach().requires_grad_(True)
                caught[layer] = z
                current = from_map(current, layout, z.clone(), part)
            return None if current is out else current

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    return handles


def class_gradients(loaded: LoadedModel, files: Sequence[str], layers: Sequence[str],
                    target: int, s: ImageSettings, done: int, total: int
                    ) -> Job[TcavProgress, tuple[dict[str, torch.Tensor], tuple[int, ...],
                                                 tuple[tuple[str, str], ...]]]:
    """({layer: (n, C) the class logit's gradient summed over positions}, the readable
    files' positions, the skipped files) for `files` (module doc)."""
    device = loaded.device
    model = private_copy(loaded.module, device)
    kept: list[int] = []
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    skipped: list[tuple[str, str]] = []
    with ThreadPoolExecutor(2) as pool:
        for upto, ids, images in _batches(files, s, device, pool, skipped):
            if images:
                x = prepare_batch(images, loaded.preprocess)
                caught: dict[str, torch.Tensor] = {}
                handles = _hook_layers(model, layers, input_size(x), caught)
                try:
                    with torch.enable_grad():
                        score = _logits(model(x))[:, target].sum()
                        wanted = [caught[name] for name in layers if name in caught]
                        grads = (torch.autograd.grad(score, wanted, allow_unused=True)
                                 if score.requires_grad and wanted else [None] * len(wanted))
                finally:
                    for h in handles:
                        h.remove()
                got = dict(zip([n for n in layers if n in caught], grads, strict=True))
                for name in layers:
                    g = got.get(name)
                    if name not in caught:
                        raise ValueError(f"layer {name!r} was not run by the forward pass")
                    # no gradient: the logit does not depend on this layer (a side branch)
                    g = torch.zeros_like(caught[name]) if g is None else g
                    parts[name].append(g.detach().float().sum((2, 3)))
                kept += ids
            yield TcavProgress(done=done + upto, total=total, stage="gradients")
    rows = {name: torch.cat(p) if p else torch.zeros(0, 0, device=device)
            for name, p in parts.items()}
    return rows, tuple(kept), tuple(skipped)
