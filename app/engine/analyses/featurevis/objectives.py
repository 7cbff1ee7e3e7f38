"""Objectives to maximize: a value per image of the batch, built from the target layer.

An `Objective` wraps `fn(acts, image) -> (N,)`, where `acts` is the target layer's output for
the transformed batch ((N, C, H, W) for feature maps, (N, K) for logits) and `image` the
untransformed batch in [0, 1]. Objectives combine with `+`, `-` and scalar `*`, as in lucent:
`channel(units) - 0.05 * tv()`. Per-image values let one batch optimize one unit per image:
the gradient of the sum reaches each image only through its own term (eval-mode nets mix
nothing across the batch), except for `diversity`, which compares images on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from app.engine.analyses.featurevis.regularizers import total_variation

ObjectiveFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Objective:
    """A per-image score to maximize; supports `a + b`, `a - b`, `k * a`, `-a`."""

    def __init__(self, fn: ObjectiveFn, name: str) -> None:
        self.fn = fn
        self.name = name

    def __call__(self, acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.fn(acts, image)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, int | float):
            return Objective(lambda a, i: self(a, i) + other, f"{self.name} + {other}")
        return Objective(lambda a, i: self(a, i) + other(a, i), f"{self.name} + {other.name}")

    __radd__ = __add__  # sum([...]) starts from 0

    def __neg__(self) -> Objective:
        return Objective(lambda a, i: -self(a, i), f"-{self.name}")

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, int | float):
            return NotImplemented
        return Objective(lambda a, i: k * self(a, i), f"{k}*{self.name}")

    __rmul__ = __mul__


def _per_image(units: int | Sequence[int], n: int, device: torch.device) -> torch.Tensor:
    if isinstance(units, int):
        return torch.full((n,), units, dtype=torch.long, device=device)
    idx = torch.as_tensor(list(units), dtype=torch.long, device=device)
    if idx.numel() != n:
        raise ValueError(f"{idx.numel()} units for a batch of {n} images")
    return idx


def _pick(acts: torch.Tensor, units: int | Sequence[int]) -> torch.Tensor:
    """acts[i, units[i]] for each image i: (N, C, ...) → (N, ...)."""
    idx = _per_image(units, acts.shape[0], acts.device)
    return acts[torch.arange(acts.shape[0], device=acts.device), idx]


def channel(units: int | Sequence[int]) -> Objective:
    """Mean of a channel's map (one unit for all images, or one per image)."""

    def fn(acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        picked = _pick(acts, units)
        return picked.flatten(1).mean(1) if picked.dim() > 1 else picked

    return Objective(fn, f"channel({units})")


def channel_max(units: int | Sequence[int]) -> Objective:
    """Maximum of a channel's map: how a dataset scan ranks images (per-image maxima)."""

    def fn(acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        picked = _pick(acts, units)
        return picked.flatten(1).amax(1) if picked.dim() > 1 else picked

    return Objective(fn, f"channel_max({units})")


def neuron(units: int | Sequence[int], y: int | None = None, x: int | None = None) -> Objective:
    """A channel's value at one position (default: the center of the map)."""

    def fn(acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        picked = _pick(acts, units)
        if picked.dim() == 1:
            return picked
        h, w = picked.shape[-2:]
        return picked[:, h // 2 if y is None else y, w // 2 if x is None else x]

    return Objective(fn, f"neuron({units}, {y}, {x})")


def direction(vectors: Sequence[float] | Sequence[Sequence[float]] | torch.Tensor,
              y: int | None = None, x: int | None = None) -> Objective:
    """Dot product of the activation vector with a direction, as lucid's `direction`.

    `vectors`: (C,) for every image or (N, C), one per image (a neuron group's channel
    factor, a position's activation vector). Averaged over positions; with `y` and `x`, at
    that position only (lucid's `direction_neuron`). (N, K) layers: the plain dot product.
    """
    vec = torch.as_tensor(vectors, dtype=torch.float32)
    if vec.dim() not in (1, 2):
        raise ValueError(f"a direction is (C,) or (N, C), got {tuple(vec.shape)}")

    def fn(acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        v = vec.to(acts.device, acts.dtype)
        v = v.expand(acts.shape[0], -1) if v.dim() == 1 else v
        if v.shape != acts.shape[:2]:
            raise ValueError(f"direction of shape {tuple(v.shape)} for activations of shape "
                             f"{tuple(acts.shape[:2])}")
        if acts.dim() == 2:
            return (acts * v).sum(1)
        if y is not None and x is not None:
            return (acts[:, :, y, x] * v).sum(1)
        return torch.einsum("nchw,nc->nhw", acts, v).flatten(1).mean(1)

    return Objective(fn, f"direction({tuple(vec.shape)}, {y}, {x})")


def direction_cossim(vectors: torch.Tensor, power: float = 2.0, reduce: str = "mean"
                     ) -> Objective:
    """dot × max(cos, 0.1)^power of each position's activation vector with a direction
    (Lucid's `direction` with `cossim_pow`, horama's), reduced over positions: "mean",
    "center" (the map's centre position) or "max".

    How a direction layer's unit (a concept, a CAV) is rendered and attributed: an NMF
    concept's code is a nonnegative least-squares solution, piecewise linear with a zero
    gradient wherever the concept is off the support, so its gradient cannot lead an
    ascent from noise; the direction itself can. The cosine factor rewards activation
    vectors that point along the direction rather than merely long ones (a plain dot
    product is maximized by making every channel large); the 0.1 floor keeps a gradient
    where the cosine is still negative. `vectors`: (N, C), one per image.
    """
    vec = torch.as_tensor(vectors, dtype=torch.float32)
    if vec.dim() != 2:
        raise ValueError(f"directions are (N, C), got {tuple(vec.shape)}")
    if reduce not in ("mean", "center", "max"):
        raise ValueError(f"unknown reduction {reduce!r}")

    def fn(acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        v = vec.to(acts.device, acts.dtype)
        if acts.dim() != 4 or v.shape != acts.shape[:2]:
            raise ValueError(f"directions of shape {tuple(v.shape)} for activations of "
                             f"shape {tuple(acts.shape)}")
        dot = torch.einsum("nchw,nc->nhw", acts, v)
        norms = acts.norm(dim=1) * v.norm(dim=1)[:, None, None]
        cos = dot / norms.clamp_min(1e-8)
        score = dot * cos.clamp_min(0.1) ** power
        if reduce == "center":
            h, w = score.shape[-2:]
            return score[:, h // 2, w // 2]
        flat = score.flatten(1)
        return flat.amax(1) if reduce == "max" else flat.mean(1)

    return Objective(fn, f"direction_cossim({tuple(vec.shape)}, {power}, {reduce})")


def class_logit(classes: int | Sequence[int]) -> Objective:
    """The pre-softmax score of a class; the target layer must output (N, K)."""

    def fn(acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if acts.dim() != 2:
            raise ValueError("class_logit needs a layer with (N, classes) output")
        return _pick(acts, classes)

    return Objective(fn, f"class_logit({classes})")


def diversity(groups: Sequence[int] | None = None, crops: int = 1) -> Objective:
    """Minus each image's mean cosine similarity to the others' Gram matrices (Lucid).

    Use it with a batch of the *same* unit to get several different images of it. `groups`
    (one id per image) compares only images of the same group (several units, N images
    each, in one batch); `crops`: the activations hold that many crops per image
    (`transforms.random_crops`), whose Gram matrices are averaged per image first.
    """

    def fn(acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        n = acts.shape[0] // crops
        if n < 2 or acts.dim() != 4:
            return acts.new_zeros(n)
        flat = acts.flatten(2)
        gram = torch.bmm(flat, flat.transpose(1, 2)).flatten(1)
        gram = gram.view(n, crops, -1).mean(1)
        gram = torch.nn.functional.normalize(gram, dim=1)
        sim = gram @ gram.T
        ids = torch.zeros(n) if groups is None else torch.as_tensor(list(groups))
        same = (ids[:, None] == ids[None, :]).to(sim.device)
        same.fill_diagonal_(False)
        count = same.sum(1).clamp_min(1)
        return -(sim * same).sum(1) / count

    return Objective(fn, f"diversity({groups}, {crops})")


def crop_mean(inner: Objective, crops: int) -> Objective:
    """`inner` evaluated on `crops` crops per image (built for the repeated units), averaged
    back to one value per image: (N·crops,) → (N,)."""
    if crops <= 1:
        return inner
    return Objective(lambda a, i: inner(a, i).view(-1, crops).mean(1),
                     f"crop_mean({inner.name}, {crops})")


def l2_pull(seed: torch.Tensor, weight: float) -> Objective:
    """−weight · mean squared distance of each image to `seed` ((N or 1, 3, H, W) in [0, 1]):
    feature accentuation's pull toward the image it started from."""
    target = seed.detach()

    def fn(acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return -weight * (image - target.to(image)).square().flatten(1).mean(1)

    return Objective(fn, f"l2_pull({weight})")


def code_match(target: torch.Tensor) -> Objective:
    """−‖φ(x̂) − φ(x)‖² / ‖φ(x)‖² per image: feature inversion's objective (Mahendran &
    Vedaldi 2015), `target` the layer's code φ(x) of the image, (1 or N, ...)."""
    code = target.detach()
    norm = code.flatten(1).square().sum(1).clamp_min(1e-12)

    def fn(acts: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        diff = (acts - code.to(acts)).flatten(1).square().sum(1)
        return -diff / norm.to(acts)

    return Objective(fn, "code_match()")


def tv() -> Objective:
    """Total variation of the image (subtract it: `... - w * tv()`)."""
    return Objective(lambda acts, image: total_variation(image), "tv()")
