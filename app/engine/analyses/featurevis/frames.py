"""Preferred images of a given frame: feature accentuation and feature inversion.

Both run the renderer's one loop (`render.Ascent`) on a frame instead of noise, as jobs that
yield a `FrameProgress` per step (with a preview every `preview_every` steps) and return a
frozen result; the GUI runs them on a frozen frame, the CLI on an image file.

- `accentuate` (Hamblin et al. 2024, "Feature Accentuation"): start from the frame's own
  Fourier coefficients (black and white pulled just inside (0, 1): at the bounds the
  sigmoid has no gradient, and a saturated image could not move) and raise one unit's
  activation while an L2 term pulls toward the frame. The steps are scaled 1/f^1.5 per
  frequency (the parametrization multiplies each coefficient by its scale; horama scales
  only the gradient, which Adam's per-coefficient normalisation undoes), so coarse
  structure moves first and the picture stays the frame: what in *this* frame the unit
  responds to, drawn more strongly.
- `invert` (Mahendran & Vedaldi 2015): from noise, find an image whose code at a layer
  matches the frame's, ‖φ(x̂) − φ(x)‖² / ‖φ(x)‖², under the same priors as a render
  (Fourier, decorrelated colour, total variation). It shows what the layer keeps of what
  it saw; several layers are inverted one after another in one job.

The frame is prepared as the model sees it (its centre crop, resized), in [0, 1].
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.core.jobs import Job, Progress
from app.engine.analyses.featurevis import objectives as obj
from app.engine.analyses.featurevis.param import FourierImage, fourier_from_image
from app.engine.analyses.featurevis.presets import ACCENTUATION, INVERSION, Preset
from app.engine.analyses.featurevis.render import Ascent, Renderer, to_uint8, unit_objective
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch


@dataclass(frozen=True, kw_only=True)
class FrameProgress(Progress):
    """A step of accentuation or inversion; `image` (H, W, 3) uint8 on preview steps.

    value: the unit's activation (accentuation) or the relative code error (inversion) of the
    step's image, on preview steps only.
    """

    layer: str
    image: np.ndarray | None = None
    value: float | None = None


@dataclass(frozen=True)
class AccentuationResult:
    layer: str
    unit: int
    image: np.ndarray  # (H, W, 3) uint8, the accentuated frame
    seed: np.ndarray  # (H, W, 3) uint8, the frame as the model saw it (the start)
    activation_before: float  # the unit's objective on the frame
    activation_after: float  # on the accentuated image (clean, no transforms)
    psnr: float  # dB, accentuated vs frame
    objective: str = "channel"


@dataclass(frozen=True)
class LayerInversion:
    layer: str
    image: np.ndarray  # (H, W, 3) uint8 reconstruction
    code_error: float  # ‖φ(x̂) − φ(x)‖ / ‖φ(x)‖ on the finished image
    start_error: float  # the same for the image the ascent started from


@dataclass(frozen=True)
class InversionResult:
    seed: np.ndarray  # (H, W, 3) uint8, the frame as the model saw it
    layers: tuple[LayerInversion, ...]


def frame_batch(image: np.ndarray, size: int, crop_fraction: float,
                device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 RGB → (1, 3, size, size) in [0, 1]: the model's crop, resized."""
    from app.engine.runtime.preprocess import Preprocess

    raw = Preprocess(size, crop_fraction, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return prepare_batch([frame_to_tensor(image, device)], raw)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) / 255.0 ** 2
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _preset(base: Preset, preset: Preset | None, steps: int | None,
            size: int | None) -> Preset:
    return (preset if preset is not None else base).with_overrides(steps, size)


def accentuate(loaded: LoadedModel, image: np.ndarray, layer: str, unit: int, *,
               steps: int | None = None, size: int | None = None, objective: str = "channel",
               seed: int = 0, pull: float | None = None, preset: Preset | None = None,
               device: torch.device | None = None, renderer: Renderer | None = None
               ) -> Job[FrameProgress, AccentuationResult]:
    """Accentuate `unit` of `layer` in `image` ((H, W, 3) uint8 RGB), a job.

    `size`: side of the result (default: the model's input size); `pull`: the L2 weight
    (default: the preset's, `presets.ACCENTUATION`); `renderer`: one already holding this
    layer's private copy (the GUI keeps one per layer).
    """
    r = renderer if renderer is not None else Renderer(loaded, layer, device)
    p = _preset(ACCENTUATION, preset, steps, size or loaded.preprocess.size)
    if pull is not None:
        p = dataclasses.replace(p, pull=pull)
    unit_objective(objective, [])  # a bad name fails before any work
    start = frame_batch(image, p.size, loaded.preprocess.crop_fraction, r.device)
    before = float(r.measure(start, [unit], objective)[0])
    rngs = [torch.Generator().manual_seed(seed)]
    param = FourierImage(rngs, p.size, p.size, r.device, decorrelate=p.decorrelate,
                         decay_power=p.decay_power)
    with torch.no_grad():
        param.spectrum.copy_(fourier_from_image(start, p.decorrelate, p.decay_power))
        # the pull's target is the frame as the parametrization renders it (the warm start
        # pulls the darkest and brightest pixels inside (0, 1), `WARM_START_INSET`, where
        # the sigmoid still has a gradient), so the pull is zero at the start
        seed_image = param().detach()
    # the pull is weighed against the layer's typical activation on this frame (the unit's
    # own can be near zero), so one weight fits every layer and unit
    with torch.no_grad():
        scale = max(float(r.forward(start).abs().mean()), 1e-6)
    goal = (1.0 / scale) * unit_objective(objective, [unit])
    goal = goal + obj.l2_pull(seed_image, p.pull / 0.01)  # in units of MSE at 20 dB
    if p.tv_weight:
        goal = goal - p.tv_weight * obj.tv()
    ascent = Ascent(r, param, goal, p, rngs)
    last = to_uint8(seed_image)[0]
    for step, imgs, _ in ascent.run():
        value = None
        if imgs is not None:
            last = imgs[0]
            value = float(r.measure(imgs, [unit], objective)[0])
        yield FrameProgress(done=step, total=p.steps, layer=layer,
                            image=last if imgs is not None else None, value=value)
    after = float(r.measure(last[None], [unit], objective)[0])
    seed_u8 = to_uint8(start)[0]
    return AccentuationResult(layer, unit, last, seed_u8, before, after, psnr(last, seed_u8),
                              objective)


def _code_error(r: Renderer, images: torch.Tensor, code: torch.Tensor) -> float:
    with torch.no_grad():
        got = r.forward(images.to(r.device))
    return float((got - code).flatten().norm() / code.flatten().norm().clamp_min(1e-12))


def invert(loaded: LoadedModel, image: np.ndarray, layers: Sequence[str], *,
           steps: int | None = None, size: int | None = None, seed: int = 0,
           preset: Preset | None = None, device: torch.device | None = None,
           renderers: dict[str, Renderer] | None = None) -> Job[FrameProgress, InversionResult]:
    """Reconstruct `image` ((H, W, 3) uint8 RGB) from each layer's code, a job.

    The layers are inverted one after another (progress `done` counts steps over all of
    them). `renderers`: private copies already held, by layer.
    """
    p = _preset(INVERSION, preset, steps, size or loaded.preprocess.size)
    layers = list(layers)
    if not layers:
        raise ValueError("invert: no layers given")
    out: list[LayerInversion] = []
    seed_u8 = np.zeros((p.size, p.size, 3), np.uint8)
    for i, layer in enumerate(layers):
        r = (renderers or {}).get(layer) or Renderer(loaded, layer, device)
        target = frame_batch(image, p.size, loaded.preprocess.crop_fraction, r.device)
        seed_u8 = to_uint8(target)[0]
        with torch.no_grad():
            code = r.forward(target).detach()
        rngs = [torch.Generator().manual_seed(seed)]
        param = FourierImage(rngs, p.size, p.size, r.device, decorrelate=p.decorrelate,
                             decay_power=p.decay_power)
        with torch.no_grad():
            start_error = _code_error(r, param(), code)
        goal = obj.code_match(code)
        if p.tv_weight:
            goal = goal - p.tv_weight * obj.tv()
        last = to_uint8(param().detach())[0]
        for step, imgs, _ in Ascent(r, param, goal, p, rngs).run():
            value = None
            if imgs is not None:
                last = imgs[0]
                value = _code_error(r, _to_float(imgs), code)
            yield FrameProgress(done=i * p.steps + step, total=len(layers) * p.steps,
                                layer=layer, image=last if imgs is not None else None,
                                value=value)
        out.append(LayerInversion(layer, last, _code_error(r, _to_float(last[None]), code),
                                  start_error))
    return InversionResult(seed_u8, tuple(out))


def _to_float(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 → (N, 3, H, W) float in [0, 1]: errors are measured on the image
    as it is saved, not on the unrounded tensor."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
