"""Named recipes for preferred images; `[render].preset` in settings.toml picks one by name."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """Everything that defines a render besides the unit, the seed and the device."""

    name: str
    description: str
    param: str  # "pixel" | "fourier"
    decorrelate: bool  # Fourier only: optimize in ImageNet's decorrelated color space
    optimizer: str  # "adam" | "sgd" (Yosinski's plain ascent, gradient scaled per image)
    lr: float
    steps: int
    size: int  # pixels per side of the result
    transforms: float  # strength of Lucid's jitter/scale/rotate chain; 0 = none
    l2_decay: float = 0.0  # pixel step operator
    blur_every: int = 0  # pixel step operator: Gaussian blur on every N-th step
    blur_sigma: float = 0.0
    clip_norm_pct: float = 0.0  # pixel step operator: zero the smallest-norm pixels
    clip_contrib_pct: float = 0.0  # pixel step operator: zero the least-contributing pixels
    tv_weight: float = 0.0  # total-variation penalty (Mahendran & Vedaldi)
    preview_every: int = 8  # steps between previews

    def with_overrides(self, steps: int | None = None, size: int | None = None) -> Preset:
        """This preset with `steps`/`size` replaced where given (None or 0 keeps the preset's)."""
        return dataclasses.replace(self, steps=steps or self.steps, size=size or self.size)


PRESETS: dict[str, Preset] = {
    "yosinski2015": Preset(
        name="yosinski2015",
        description="Yosinski et al. 2015: pixels, plain ascent, L2 decay 1e-4, "
                    "blur σ=1 every 4 steps",
        param="pixel", decorrelate=False, optimizer="sgd", lr=0.01, steps=200, size=224,
        transforms=0.0, l2_decay=1e-4, blur_every=4, blur_sigma=1.0,
    ),
    "lucid": Preset(
        name="lucid",
        description="Olah et al. 2017 (Lucid): Fourier + decorrelated color, standard "
                    "transforms, Adam 0.05",
        param="fourier", decorrelate=True, optimizer="adam", lr=0.05, steps=512, size=128,
        transforms=1.0,
    ),
    "fast": Preset(
        name="fast",
        description="ours: Lucid's parametrization, half-strength transforms, a quarter of "
                    "its steps; truncated, batched, at the image's own size",
        param="fourier", decorrelate=True, optimizer="adam", lr=0.05, steps=128, size=128,
        transforms=0.5, preview_every=8,
    ),
    "fooling": Preset(
        name="fooling",
        description="Nguyen et al. 2015: plain pixels, no priors (no transforms, decay or "
                    "blur), plain ascent: images a network is sure of that no one recognizes",
        param="pixel", decorrelate=False, optimizer="sgd", lr=0.01, steps=64, size=224,
        transforms=0.0,
    ),
}


class PresetError(ValueError):
    """An unknown preset name; the message lists the known ones."""


def get_preset(name: str) -> Preset:
    """The preset called `name` (PresetError naming the choices if none)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise PresetError(
            f"unknown render preset {name!r}: use one of {', '.join(PRESETS)}"
        ) from None
