"""Preferred images of units: regularized gradient ascent, with previews and a cache.

The entry point is `render_units`, a job (`app.core.jobs`) meant to run on a background
thread:

    result = run_job(render_units(loaded, "_blocks.8", [3], "fast",
                                  cache_root=cache_root(settings.cache.dir)),
                     on_progress=show, cancel=event)   # show(p): p.images is a preview or None

It yields a `RenderProgress` every optimization step (so a cancel lands within one step),
with images every `preset.preview_every` steps, and one with `final=True` per batch of units
holding the finished images and their activations (measured on the clean image, without
transforms). It returns a `RenderResult` with every unit's image. A cancelled render caches
nothing. Units already in the cache are not rendered again; `cached_render` reads one
without starting anything. `Renderer` keeps the private model copy between calls (the GUI can
hold one per layer and skip the copy on each click).

One loop serves every recipe: `Ascent` takes a parametrization, an objective and a preset and
runs gradient ascent as a generator, accumulating the transparency map (MACO's alpha,
|∂objective/∂pixel| summed over steps and colours) when the preset asks. `render` builds it for
units from noise (a direction layer's units, `L@nmf32`: the direction objective on the
source layer, dot × cos^p, measured as the unit's code; see `objectives.direction_cossim`;
with `diversity` N images per unit), `accentuate` and `invert`
(`frames.py`) for a given image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from app.core.jobs import Job, Progress
from app.engine.analyses.featurevis import objectives as obj
from app.engine.analyses.featurevis import regularizers as reg
from app.engine.analyses.featurevis.param import Param, make_param
from app.engine.analyses.featurevis.presets import Preset, get_preset, recipe_digest
from app.engine.analyses.featurevis.render_cache import (
    RenderKey,
    cached_alpha,
    cached_render,
    store_alpha,
    store_render,
)
from app.engine.analyses.featurevis.spectrum import Spectrum, bundled_spectrum, magnitude_at
from app.engine.analyses.featurevis.transforms import (
    FusedTransforms,
    Transform,
    random_crops,
    standard_transforms,
    window,
)
from app.engine.runtime.cache import model_key
from app.engine.runtime.directions import (
    DirectionLayer,
    UnknownDirectionLayer,
    direction_sets,
    is_direction_layer,
    resolve,
)
from app.engine.runtime.distributed import Ranks, failing_together
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.recorder import LOGITS
from app.engine.runtime.truncate import truncated_copies

OBJECTIVES = ("channel", "neuron", "max")


@dataclass(frozen=True, kw_only=True)
class RenderProgress(Progress):
    """One step of a render, over every unit of `units` (`done`/`total` count steps over
    all batches of the call).

    images: (N, H, W, 3) uint8 RGB and activations: (N,) float32, the objective's value
    (during the run: on the transformed image of this step; when `final`: on the clean
    image) — on preview steps and final ones only, else None.
    """

    units: tuple[int, ...]
    images: np.ndarray | None = None
    activations: np.ndarray | None = None
    final: bool = False
    cached: tuple[bool, ...] = field(default=())  # per unit: served from the cache
    alphas: np.ndarray | None = None  # (N, H, W) float32 transparency, when the preset keeps it
    # over the whole call (`render_units`; this rank's share under torchrun): units finished
    # (this step's batch included once it is final), and all of them (0: not counted, as in
    # a bare `Renderer.render`)
    units_done: int = 0
    units_total: int = 0

    @property
    def step(self) -> int:
        return self.done

    def line(self) -> str:
        """`units 16/64 · step 40/512`, for a progress bar."""
        if self.units_total:
            return (f"units {self.units_done}/{self.units_total} · "
                    f"step {self.done}/{self.total}")
        return super().line()


@dataclass(frozen=True)
class RenderResult:
    """Every rendered unit's finished image (H, W, 3) uint8, activation and cache hit."""

    layer: str
    preset: Preset
    units: tuple[int, ...]
    images: np.ndarray  # (N, H, W, 3) in the order of `units`
    activations: np.ndarray  # (N,) float32, on the clean images
    cached: tuple[bool, ...]
    # class units (layer `logits`): the probability the network gives each finished image
    # for its class, softmax over all classes; None for any other layer
    probabilities: np.ndarray | None = None
    # (N, H, W) float32 in [0, 1]: each image's accumulated |∂objective/∂pixel| over its max
    # (MACO's transparency; 8-bit when read from the cache); None unless the preset keeps it
    alphas: np.ndarray | None = None


def render_variant(preset: Preset, spectrum: Spectrum | None) -> str:
    """What a cached render depends on beyond its folder's name: the preset's recipe and,
    for MACO, the magnitude spectrum."""
    variant = f"r{recipe_digest(preset)}"
    if preset.param == "maco" and spectrum is not None:
        variant += f"-{spectrum.digest()}"
    return variant


def image_seed(seed: int, unit: int, repeat: int = 0) -> int:
    """The generator seed of one image: a unit's image depends on (seed, unit) only."""
    return (seed * 0x9E3779B1 + unit * 0x85EBCA77 + repeat * 0xC2B2AE3D + 1) % (1 << 62)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] → (N, H, W, 3) uint8 on the CPU."""
    x = images.detach().clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


COSSIM_POWER = 2.0  # a direction layer's objective: dot × cos^2 (see `obj.direction_cossim`)


def unit_objective(kind: str, units: Sequence[int],
                   directions: DirectionLayer | None = None) -> obj.Objective:
    """The named per-unit objective: "channel" (map mean), "neuron" (map center), "max".

    On a direction layer (`directions` given, the renderer's net ending at its source) the
    same three reductions of the unit's direction objective, dot × cos^p."""
    if directions is not None and kind in OBJECTIVES:
        vectors = torch.stack([directions.objective_direction(u) for u in units]) if units \
            else torch.zeros(0, directions.h.shape[1])
        reduce = {"channel": "mean", "neuron": "center", "max": "max"}[kind]
        return obj.direction_cossim(vectors, COSSIM_POWER, reduce)
    if kind == "channel":
        return obj.channel(list(units))
    if kind == "neuron":
        return obj.neuron(list(units))
    if kind == "max":
        return obj.channel_max(list(units))
    raise ValueError(f"unknown objective {kind!r}: use {', '.join(OBJECTIVES)}")


class Renderer:
    """Gradient ascent on units of one layer of a private, truncated copy of a model."""

    def __init__(self, loaded: LoadedModel, layer: str, device: torch.device | None = None,
                 cache_root: Path | None = None, spectrum: Spectrum | None = None,
                 directions: DirectionLayer | None = None) -> None:
        self.device = torch.device(device) if device is not None else loaded.device
        self._spectrum = spectrum  # MACO's; the bundled one when None (read on first use)
        self.layer = layer
        # a direction layer (`L@nmf32`): the net ends at its source, the objective is the
        # unit's direction there, and what is measured is the unit's code
        self.directions = directions if directions is not None else _direction_of(
            loaded, layer, cache_root, self.device)
        source = self.directions.set.source if self.directions is not None else layer
        # a copy kept from an earlier render of this layer if there is one (`release`)
        self.truncated = truncated_copies.take(loaded.module, source, self.device)
        pre = loaded.preprocess
        self._mean = torch.tensor(pre.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(pre.std, device=self.device).view(1, 3, 1, 1)
        self.cache_root = Path(cache_root) if cache_root is not None else None
        self.model_key = model_key(loaded) if cache_root is not None else ""

    def release(self) -> None:
        """Done with this renderer: its model copy is kept for the next render of the layer."""
        truncated_copies.give_back(self.truncated)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Target layer's output for (N, 3, H, W) images in [0, 1] (the model's normalization)."""
        return self.truncated((images - self._mean) / self._std)

    @torch.no_grad()
    def measure(self, images: np.ndarray | torch.Tensor, units: Sequence[int],
                objective: str = "channel") -> np.ndarray:
        """The objective's value for each image as it is: (N, H, W, 3) uint8 or (N, 3, H, W)."""
        if isinstance(images, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
        else:
            x = images
        x = x.to(self.device)
        acts = self.forward(x)
        if self.directions is not None:  # the unit's own activation: its code
            acts = self.directions.codes(acts)
        values = unit_objective(objective, units)(acts, x)
        return values.float().cpu().numpy()

    def class_probabilities(self, images: np.ndarray, units: Sequence[int]) -> np.ndarray:
        """(N,) softmax probability of class `units[i]` for image i, (N, H, W, 3) uint8:
        how sure the network is that a class visualization shows its class."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            scores = self.forward(x.to(self.device)).flatten(1).float()
        picked = scores.softmax(1)[torch.arange(len(units)), torch.tensor(list(units))]
        return picked.cpu().numpy()

    @property
    def spectrum(self) -> Spectrum:
        if self._spectrum is None:
            self._spectrum = bundled_spectrum()
        return self._spectrum

    def key(self, preset: Preset, seed: int, objective: str) -> RenderKey:
        variant = render_variant(preset, self.spectrum if preset.param == "maco" else None)
        return RenderKey(self.model_key, self.layer, preset.name, preset.steps, preset.size,
                         seed, objective, variant + _set_variant(self.directions))

    def make_param(self, p: Preset, rngs: Sequence[torch.Generator]) -> Param:
        """The preset's parametrization, one image per generator, at `p.size`."""
        magnitude = magnitude_at(self.spectrum, p.size, p.size) if p.param == "maco" else None
        return make_param(p.param, rngs, p.size, p.size, self.device, p.decorrelate,
                          magnitude=magnitude, decay_power=p.decay_power)

    def render(self, units: Sequence[int], preset: Preset | str = "fast", steps: int | None = None,
               size: int | None = None, seed: int = 0, objective: str = "channel",
               step_offset: int = 0, total: int | None = None,
               diversity: int = 1) -> Iterator[RenderProgress]:
        """Optimize one image per unit (`diversity` > 1: that many per unit, pushed apart by
        the diversity term, in the order u0, u0, …, u1, …), all in one batch; see the
        module docstring. A diversity render is cached as a whole: its N images of a unit are
        served only all together (they were optimized together), under keys of their own."""
        p = (get_preset(preset) if isinstance(preset, str) else preset).with_overrides(steps, size)
        unit_objective(objective, [])  # reject a bad name before any work
        if diversity < 1:
            raise ValueError(f"diversity must be at least 1, got {diversity}")
        units = tuple(int(u) for u in units for _ in range(diversity))
        total = p.steps if total is None else total
        n = len(units)
        images = np.zeros((n, p.size, p.size, 3), np.uint8)
        acts = np.zeros(n, np.float32)
        alphas = np.zeros((n, p.size, p.size), np.float32) if p.transparency else None
        cached = [False] * n
        keys = [diversity_key(self.key(p, seed, objective), diversity, i % diversity)
                for i in range(n)]
        use_cache = self.cache_root is not None
        if use_cache:
            assert self.cache_root is not None
            for i, u in enumerate(units):
                hit = cached_render(self.cache_root, keys[i], u)
                alpha = (cached_alpha(self.cache_root, keys[i], u) if alphas is not None
                         else None)
                if hit is not None and hit[0].shape == images.shape[1:] and (
                        alphas is None or alpha is not None):
                    images[i], acts[i], cached[i] = hit[0], hit[1], True
                    if alphas is not None and alpha is not None:
                        alphas[i] = alpha
            for start in range(0, n, diversity):  # a unit's N images: all hits, or none
                if not all(cached[start : start + diversity]):
                    cached[start : start + diversity] = [False] * diversity
        todo = [i for i in range(n) if not cached[i]]
        if todo:
            ascent = self.ascent([units[i] for i in todo], p, seed, objective,
                                 diversity=diversity)
            for step, imgs, values in ascent.run():
                preview = imgs is not None and step < p.steps
                if imgs is not None:
                    images[todo], acts[todo] = imgs, values
                if step < p.steps:
                    yield RenderProgress(done=step_offset + step, total=total, units=units,
                                         images=images.copy() if preview else None,
                                         activations=acts.copy() if preview else None,
                                         cached=tuple(cached))
            todo_units = [units[i] for i in todo]
            acts[todo] = self.measure(images[todo], todo_units, objective)
            if alphas is not None:
                alphas[todo] = ascent.alpha()
            if use_cache:
                assert self.cache_root is not None
                for i in todo:
                    if alphas is not None:  # before the JSON that completes the entry
                        store_alpha(self.cache_root, keys[i], units[i], alphas[i])
                    store_render(self.cache_root, keys[i], units[i], images[i],
                                 float(acts[i]))
        yield RenderProgress(done=step_offset + p.steps, total=total, units=units,
                             images=images, activations=acts, final=True, cached=tuple(cached),
                             alphas=alphas)

    def ascent(self, units: list[int], p: Preset, seed: int, objective: str,
               diversity: int = 1) -> Ascent:
        """Gradient ascent from noise on `units` (one image each, repeats allowed: a repeat
        gets the next seed of its unit)."""
        repeats: dict[int, int] = {}
        rngs = []
        for u in units:
            rngs.append(torch.Generator().manual_seed(image_seed(seed, u, repeats.get(u, 0))))
            repeats[u] = repeats.get(u, 0) + 1
        k = max(1, p.crops)
        goal = obj.crop_mean(unit_objective(objective, [u for u in units for _ in range(k)],
                                            self.directions), k)
        if diversity > 1:
            goal = with_diversity(goal, units, k, p.diversity_weight)
        if p.tv_weight:
            goal = goal - p.tv_weight * obj.tv()
        return Ascent(self, self.make_param(p, rngs), goal, p, rngs)


def diversity_key(key: RenderKey, diversity: int, repeat: int) -> RenderKey:
    """The cache key of image `repeat` of a `diversity`-image render (`key` itself for 1)."""
    if diversity <= 1:
        return key
    return dataclasses.replace(key, variant=f"{key.variant}-div{diversity}.{repeat}")


def with_diversity(goal: obj.Objective, units: Sequence[int], crops: int,
                   weight: float) -> obj.Objective:
    """`goal` − weight·|mean goal|·similarity to the other images of the same unit: the
    weight is relative to the unit's own objective (its images' mean, detached), so it fits
    any layer, and a unit's images do not depend on which other units share the batch."""
    div = obj.diversity(groups=list(units), crops=crops)
    ids = torch.as_tensor(list(units))
    same = (ids[:, None] == ids[None, :]).float()
    same = same / same.sum(1, keepdim=True)  # row i: the mean over image i's unit

    def fn(acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        score = goal(acts, image)
        scale = (same.to(score.device) @ score.detach().abs()).clamp_min(1e-6)
        return score + weight * scale * div(acts, image)

    return obj.Objective(fn, f"{goal.name} + {weight}*diversity")


def make_transform(p: Preset, size: int) -> Transform:
    """The preset's robustness transform: MACO's random crops, or Lucid's chain."""
    if p.crops:
        # never larger than the image: a small render's crops are not blown up
        return random_crops(p.crops, min(p.crop_size or size, size), p.crop_box, p.noise)
    return standard_transforms(p.transforms)


class Ascent:
    """Gradient ascent of `goal` over `param`'s images through the renderer's truncated net.

    `run()` yields (step, images uint8 or None, scores or None) after every step: arrays every
    `preset.preview_every` steps and at the end (the yield is where a cancel lands). With
    `preset.transparency`, `alpha()` is then the accumulated |∂goal/∂pixel|.
    """

    def __init__(self, renderer: Renderer, param: Param, goal: obj.Objective, p: Preset,
                 rngs: Sequence[torch.Generator]) -> None:
        self.renderer, self.param, self.goal, self.preset = renderer, param, goal, p
        self.rngs = list(rngs)
        self._alpha: torch.Tensor | None = None

    def alpha(self) -> np.ndarray:
        """(N, H, W) float32 in [0, 1]: accumulated |∂goal/∂pixel| summed over colours, over
        each image's maximum; zeros if the preset keeps none or no step ran."""
        if self._alpha is None:
            image = self.param()
            return np.zeros((image.shape[0], *image.shape[2:]), np.float32)
        a = self._alpha / self._alpha.flatten(1).amax(1).clamp_min(1e-20).view(-1, 1, 1)
        return a.float().cpu().numpy()

    def run(self) -> Iterator[tuple[int, np.ndarray | None, np.ndarray | None]]:
        p, param, goal, rngs = self.preset, self.param, self.goal, self.rngs
        forward = self.renderer.forward
        transform = make_transform(p, p.size)
        step_ops: list[reg.StepOp] = []
        if param.kind == "pixel":
            if p.l2_decay:
                step_ops.append(reg.l2_decay(p.l2_decay))
            if p.blur_every:
                step_ops.append(reg.blur_every(p.blur_every, p.blur_sigma))
            if p.clip_norm_pct:
                step_ops.append(reg.clip_small_norm(p.clip_norm_pct))
            if p.clip_contrib_pct:
                step_ops.append(reg.clip_small_contribution(p.clip_contrib_pct))
        optimizer: torch.optim.Optimizer | None = None
        if p.optimizer == "adam":
            optimizer = torch.optim.Adam(param.params, lr=p.lr)
        elif p.optimizer == "nadam":
            optimizer = torch.optim.NAdam(param.params, lr=p.lr)
        coarse_until = min(p.coarse_steps, p.steps // 2)
        with torch.enable_grad():
            for step in range(1, p.steps + 1):
                image = param()
                if p.transparency:
                    image.retain_grad()
                if step > coarse_until:
                    seen = transform(image, rngs)
                elif isinstance(transform, FusedTransforms):  # resamples the window only
                    seen = transform(image, rngs, window=p.coarse_side)
                else:
                    seen = window(transform(image, rngs), p.coarse_side, rngs)
                score = goal(forward(seen), image)
                for t in param.params:
                    t.grad = None
                (-score.sum()).backward()
                with torch.no_grad():
                    if p.transparency and image.grad is not None:
                        g = image.grad.abs().sum(1)
                        self._alpha = g if self._alpha is None else self._alpha.add_(g)
                    if optimizer is not None:
                        optimizer.step()
                    else:
                        _scaled_ascent(param.params, p.lr)
                    param.project()
                    if step_ops:
                        x = param.params[0]
                        assert x.grad is not None  # the backward above filled it
                        ascent = -x.grad
                        for op in step_ops:
                            op(step, x, ascent)
                if step % p.preview_every == 0 or step == p.steps:
                    with torch.no_grad():
                        yield step, to_uint8(param()), score.detach().float().cpu().numpy()
                else:
                    yield step, None, None


def _scaled_ascent(params: list[torch.Tensor], lr: float) -> None:
    """x ← x + lr · g / mean|g| per image: plain ascent whose step size is in pixel units.

    Raw gradients differ by orders of magnitude between units and layers; scaling each
    image's gradient by its mean magnitude makes one learning rate fit them all.
    """
    for t in params:
        assert t.grad is not None  # called right after a backward
        g = -t.grad
        norm = g.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, *([1] * (g.dim() - 1)))
        t.add_(g / norm, alpha=lr)


def render_units(loaded: LoadedModel, layer: str, units: Sequence[int],
                 preset: Preset | str = "fast", steps: int | None = None,
                 size: int | None = None, seed: int = 0, device: torch.device | None = None,
                 *, cache_root: Path | None = None, objective: str = "channel",
                 batch_size: int = 16, ranks: Ranks | None = None, diversity: int = 1,
                 spectrum: Spectrum | None = None, directions: DirectionLayer | None = None,
                 ) -> Job[RenderProgress, RenderResult]:
    """Preferred images of `units` of `layer`, `batch_size` units per batch (a job).

    Yields a progress per step and one `final` progress per batch (its `units` say which).
    `steps`/`size` of None or 0 keep the preset's. `cache_root` (e.g.
    `app.engine.runtime.cache.cache_root(settings.cache.dir)`) serves and stores finished
    images. With `ranks` (torchrun) each rank renders its batches of units (the batches of
    one process, so every image is the one a single process renders), caching each as it
    finishes; rank 0 returns every unit's result, the others their own.
    `diversity` N > 1: N images per unit with the diversity term (the result's `units` repeat
    each unit N times; a batch holds `batch_size` images, at least one unit's N).
    `spectrum`: MACO's magnitude spectrum (default: the bundled one). `directions`: the
    direction layer `layer` names (default: found in `cache_root`).
    """
    p = (get_preset(preset) if isinstance(preset, str) else preset).with_overrides(steps, size)
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    if diversity < 1:
        raise ValueError(f"diversity must be at least 1, got {diversity}")
    units = [int(u) for u in units]
    renderer = Renderer(loaded, layer, device, cache_root, spectrum, directions)
    try:  # the model copy goes back to the pool however the job ends (a cancel too)
        return (yield from _render_job(renderer, loaded, units, p, seed, objective, batch_size,
                                       ranks, diversity))
    finally:
        renderer.release()


def _render_job(renderer: Renderer, loaded: LoadedModel, units: list[int], p: Preset,
                seed: int, objective: str, batch_size: int, ranks: Ranks | None,
                diversity: int) -> Job[RenderProgress, RenderResult]:
    """`render_units`' work, on its renderer."""
    layer, cache_root = renderer.layer, renderer.cache_root
    per_batch = max(1, batch_size // diversity)
    if ranks is not None:  # before any cached image is read or written
        ranks.agree({"model weights": model_key(loaded), "layer": layer, "units": units,
                     "preset": repr(p), "seed": seed, "objective": objective,
                     "batch size": batch_size, "cache": cache_root is not None,
                     "diversity": diversity, "spectrum": renderer.key(p, seed, objective)})
    spans = ([range(i, min(len(units), i + per_batch)) for i in range(0, len(units), per_batch)]
             if ranks is None else ranks.chunks(len(units), per_batch))
    # (first unit's index, images, activations, cached, units, alphas) per finished batch
    parts: list[tuple[int, np.ndarray, np.ndarray, tuple[bool, ...], tuple[int, ...],
                      np.ndarray | None]] = []
    units_total = sum(len(span) for span in spans)
    units_done = 0
    with failing_together(ranks):
        for c, span in enumerate(spans):
            chunk = [units[i] for i in span]
            for progress in renderer.render(chunk, p, seed=seed, objective=objective,
                                            step_offset=c * p.steps, total=len(spans) * p.steps,
                                            diversity=diversity):
                if progress.final:  # one per chunk, its units in order
                    assert progress.images is not None and progress.activations is not None
                    parts.append((span.start, progress.images, progress.activations,
                                  progress.cached, progress.units, progress.alphas))
                    units_done += len(span)
                yield dataclasses.replace(progress, units_done=units_done,
                                          units_total=units_total)
    if ranks is not None:
        everyone = ranks.gather(parts)
        if everyone is not None:
            parts = sorted((part for rank_parts in everyone for part in rank_parts),
                           key=lambda part: part[0])
            if cache_root is not None:  # rank 0's cache holds it all
                base = renderer.key(p, seed, objective)
                for _, imgs, acts, _, chunk_units, alphas in parts:
                    for j, u in enumerate(chunk_units):
                        key = diversity_key(base, diversity, j % diversity)
                        if cached_render(cache_root, key, u) is None:
                            if alphas is not None:
                                store_alpha(cache_root, key, u, alphas[j])
                            store_render(cache_root, key, u, imgs[j], float(acts[j]))
    mine = [u for part in parts for u in part[4]]
    finished = (np.concatenate([part[1] for part in parts]) if parts
                else np.zeros((0, p.size, p.size, 3), np.uint8))
    probabilities = None
    if layer == LOGITS and len(finished):  # in the batches of one process: the same numbers
        probabilities = np.concatenate([
            renderer.class_probabilities(finished[i : i + batch_size], mine[i : i + batch_size])
            for i in range(0, len(mine), batch_size)])
    alphas = None
    if p.transparency:
        alphas = (np.concatenate([part[5] for part in parts if part[5] is not None]) if parts
                  else np.zeros((0, p.size, p.size), np.float32))
    return RenderResult(
        layer, p, tuple(mine), finished,
        np.concatenate([part[2] for part in parts]) if parts else np.zeros(0, np.float32),
        tuple(c for part in parts for c in part[3]), probabilities, alphas)


def cached_unit(loaded: LoadedModel, root: Path, layer: str, unit: int,
                preset: Preset | str = "fast", steps: int | None = None,
                size: int | None = None, seed: int = 0, objective: str = "channel",
                spectrum: Spectrum | None = None) -> tuple[np.ndarray, float] | None:
    """(image (H, W, 3) uint8, activation) if this unit's render is cached, else None."""
    p = (get_preset(preset) if isinstance(preset, str) else preset).with_overrides(steps, size)
    if p.param == "maco" and spectrum is None:
        spectrum = bundled_spectrum()
    variant = render_variant(p, spectrum if p.param == "maco" else None)
    if is_direction_layer(layer):
        found = direction_sets(root, model_key(loaded)).get(layer)
        if found is None:
            return None
        variant += _set_variant(DirectionLayer(found, torch.device("cpu")))
    key = RenderKey(model_key(loaded), layer, p.name, p.steps, p.size, seed, objective, variant)
    return cached_render(root, key, unit)


def _direction_of(loaded: LoadedModel, layer: str, cache_root: Path | None,
                  device: torch.device) -> DirectionLayer | None:
    """The direction layer `layer` names, from the cache (None for a plain layer)."""
    if not is_direction_layer(layer):
        return None
    if cache_root is None:
        raise UnknownDirectionLayer(f"rendering {layer!r} needs the cache its set is in")
    return DirectionLayer(resolve(layer, direction_sets(cache_root, model_key(loaded))), device)


def _set_variant(directions: DirectionLayer | None) -> str:
    """A relearned set under the same name renders anew: its folder names its fit."""
    if directions is None:
        return ""
    folder = directions.set.folder
    return f"-{folder.name if folder is not None else 'memory'}"
