"""Named recipes for preferred images; `[render].preset` in settings.toml picks one by name."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """Everything that defines a render besides the unit, the seed and the device."""

    name: str
    description: str
    param: str  # "pixel" | "fourier" | "maco" (fixed natural magnitude, phase optimized)
    decorrelate: bool  # Fourier/MACO: optimize in ImageNet's decorrelated color space
    optimizer: str  # "adam" | "nadam" | "sgd" (Yosinski's plain ascent, gradient scaled)
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
    decay_power: float = 1.0  # Fourier: the 1/f^p scale of each frequency's step
    # MACO's transform, instead of Lucid's chain: this many random crops of the image per
    # step, each `crop_box` (fractions of the side) of it, shown to the net at `crop_size`
    # px (0: the image's own size), with Gaussian noise of std `noise` added
    crops: int = 0
    crop_box: tuple[float, float] = (0.5, 1.0)
    crop_size: int = 0
    noise: float = 0.0
    transparency: bool = False  # accumulate |∂objective/∂pixel| over the steps (alpha)
    pull: float = 0.0  # L2 pull to the seed image, per unit of MSE (feature accentuation)
    # the diversity term's weight, relative to the batch's mean objective (one weight fits
    # every layer, whatever its activations' scale)
    diversity_weight: float = 0.5
    # windows first: for the first `coarse_steps` steps (at most half of them) the net sees a
    # random `coarse_side`-px window of the image at its own scale (a pattern grown on a
    # shrunk view comes out at the wrong scale; a window keeps it). At 224 px the pass
    # through the layers below the target is most of a step's cost and falls with the
    # square of the side; early on, the image is mostly its lowest frequencies, which a
    # window learns as well as the whole (0: never)
    coarse_steps: int = 0
    coarse_side: int = 144

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
        description="ours: Lucid's parametrization, frequencies scaled 1/f^1.2, NAdam 0.1, "
                    "transforms at a third of their strength, the first 32 steps on a 144-px "
                    "window, a quarter of its steps; truncated, batched, at the image's own "
                    "size",
        param="fourier", decorrelate=True, optimizer="nadam", lr=0.1, steps=128, size=128,
        transforms=0.35, decay_power=1.2, coarse_steps=32, preview_every=8,
    ),
    "maco": Preset(
        name="maco",
        description="Fel et al. 2023 (MACO): natural-image magnitude spectrum fixed, phase "
                    "optimized with NAdam; 4 random crops of the canvas per step, noise; "
                    "transparency map",
        param="maco", decorrelate=True, optimizer="nadam", lr=1.0, steps=96, size=256,
        transforms=0.0, crops=4, crop_box=(0.55, 0.9), crop_size=176, noise=0.05,
        transparency=True, preview_every=8,
    ),
    "fooling": Preset(
        name="fooling",
        description="Nguyen et al. 2015: plain pixels, no priors (no transforms, decay or "
                    "blur), plain ascent: images a network is sure of that no one recognizes",
        param="pixel", decorrelate=False, optimizer="sgd", lr=0.01, steps=64, size=224,
        transforms=0.0,
    ),
}


# Recipes for a given frame rather than for a unit from noise: not render presets (the
# `[render].preset` setting never names them), used by `accentuate` and `invert`.
ACCENTUATION = Preset(
    name="accentuate",
    description="Hamblin et al. 2024: start from the image, Fourier steps scaled 1/f^1.5, "
                "L2 pull to the image, mild jitter",
    param="fourier", decorrelate=True, optimizer="adam", lr=0.02, steps=48, size=224,
    transforms=0.25, decay_power=1.5, pull=4.0, preview_every=4,
)
INVERSION = Preset(
    name="invert",
    description="Mahendran & Vedaldi 2015: from noise, match the layer's code of the image "
                "under Lucid's priors (Fourier, decorrelated colour) and total variation",
    param="fourier", decorrelate=True, optimizer="adam", lr=0.05, steps=128, size=224,
    transforms=0.0, tv_weight=0.05, preview_every=8,
)


# Steps of the first look; the full render's own first preview comes by this step too.
FIRST_LOOK_STEPS = 8


def first_look(p: Preset) -> Preset | None:
    """The short render shown first while `p` renders, or None where `p`'s own first
    preview comes as soon (one crop per step and a preview by step `FIRST_LOOK_STEPS`:
    "fast", "lucid", "yosinski2015", "fooling").

    A preset whose step shows the net several crops (MACO: 4 at 176 px) or that previews
    late would keep a click waiting for seconds: its first look is `FIRST_LOOK_STEPS` steps
    of the same recipe at the same size, one crop a step. The size stays, so the private
    model copy and most of oneDNN's primitives it makes serve the full render after it; the
    full render, from the same seed with generators of its own, does not depend on it."""
    if p.crops <= 1 and p.preview_every <= FIRST_LOOK_STEPS:
        return None
    return dataclasses.replace(p, steps=FIRST_LOOK_STEPS, crops=min(p.crops, 1),
                               preview_every=FIRST_LOOK_STEPS)


def recipe_digest(p: Preset) -> str:
    """8 hex digits naming everything in `p` that shapes an image besides its name, steps and
    size (which a cached render's folder names already): when a preset's recipe changes,
    its renders are made anew instead of the old recipe's images being served under it."""
    recipe = dataclasses.replace(p, name="", description="", steps=0, size=0, preview_every=0)
    fields = sorted(dataclasses.asdict(recipe).items())
    return hashlib.sha1(repr(fields).encode()).hexdigest()[:8]


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
