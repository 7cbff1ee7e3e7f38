"""Preferred images: our renderer against lucent's `render_vis`, side by side in one run.

Same model (the bundled EfficientNet-Lite0, with its own input normalization given to both),
same unit, same number of steps, same image size. Reports seconds per unit and the activation
each final image reaches, measured the same way for both (clean image, no transforms; at the
image's own size, and also upsampled to 224 as lucent's `render_vis` shows it to the net).

lucent is never a dependency of the app. Install it into a throwaway folder:

    .venv/bin/python -m pip install --no-deps --target /tmp/lucent_pkgs \
        torch-lucent kornia kornia-rs tqdm decorator
    .venv/bin/python benchmarks/bench_render_vs_lucent.py --lucent-path /tmp/lucent_pkgs

With `--quality` it also measures the quality-normalized time: lucent runs its default 512
steps; ours runs until its clean image reaches the activation lucent's 512 steps reached
(the fewest steps, a multiple of 8, whose render gets there: each trial a real render of
that many steps, timed as one). Reported per unit as
our seconds ÷ lucent's seconds (the bar: ≤ 1/10).

`--set KEY=VALUE` (repeatable) overrides a field of our preset, e.g. `--set lr=0.1`, to try
a recipe without editing the presets.

The shims lucent needs today (IPython only for notebook display; kornia ≥ 0.7 moved
`get_rotation_matrix2d` and `warp_affine` under `kornia.geometry.transform`) live below.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import print_report  # noqa: E402  (benchmarks/report.py, beside this script)

from app.core.jobs import run_job  # noqa: E402
from app.core.malloc_tuning import keep_freed_memory  # noqa: E402
from app.engine.analyses.featurevis import get_preset, render_units  # noqa: E402
from app.engine.analyses.featurevis.render import Renderer  # noqa: E402
from app.engine.runtime.models import load_bundled  # noqa: E402


def import_lucent(path: str | None):  # type: ignore[no-untyped-def]
    """lucent's optvis modules, with the shims today's packages need."""
    if path:
        sys.path.insert(0, path)
    if "IPython" not in sys.modules:  # lucent.misc.io.showing imports it for notebooks only
        ipython = types.ModuleType("IPython")
        display = types.ModuleType("IPython.display")
        display.display = lambda *a, **k: None  # type: ignore[attr-defined]
        display.HTML = lambda *a, **k: None  # type: ignore[attr-defined]
        ipython.display = display  # type: ignore[attr-defined]
        sys.modules["IPython"], sys.modules["IPython.display"] = ipython, display
    import kornia
    from kornia.geometry import transform as kgt

    for name in ("get_rotation_matrix2d", "warp_affine"):
        if not hasattr(kornia, name):
            setattr(kornia, name, getattr(kgt, name))
    from lucent.optvis import param, render, transform

    return param, render, transform


def lucent_unit(model, layer: str, unit: int, steps: int, size: int, mean, std,
                lucent) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    """lucent's default recipe (Fourier + decorrelated, standard transforms, Adam 0.05)."""
    param, render, transform = lucent
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    transforms = [*transform.standard_transforms, lambda x: (x - m) / s]
    started = time.perf_counter()
    images = render.render_vis(
        model, f"{layer.replace('.', '_')}:{unit}", param_f=lambda: param.image(size),
        transforms=transforms, thresholds=(steps,), preprocess=False, progress=False,
        show_image=False,
    )
    elapsed = time.perf_counter() - started
    img = np.clip(images[-1][0] * 255 + 0.5, 0, 255).astype(np.uint8)
    return img, elapsed


def lucent_to(model, layer: str, unit: int, steps: int, size: int, mean, std,
              lucent, renderer: Renderer) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(seconds, clean activation) of lucent's `steps`-step render of one unit."""
    img, seconds = lucent_unit(model, layer, unit, steps, size, mean, std, lucent)
    return seconds, float(renderer.measure(img[None], [unit])[0])


def ours_to(loaded, layer: str, unit: int, preset, goal: float,
            limit: int = 1024) -> dict:  # type: ignore[no-untyped-def]
    """Our fewest steps (a multiple of 8) whose render reaches a clean activation ≥ `goal`,
    and that render's seconds; `reached` False if `limit` steps do not get there.

    Every trial is a real render of exactly that many steps (a recipe's schedule, such as
    `coarse`, depends on the total): up by a quarter each time, then halving the gap."""

    def trial(steps: int) -> tuple[float, float]:
        started = time.perf_counter()
        final = run_job(render_units(loaded, layer, [unit], preset.with_overrides(steps=steps)))
        return time.perf_counter() - started, float(final.activations[0])

    tried: dict[int, tuple[float, float]] = {}
    low, high = 0, 64  # low fails (or is 0), high is the next to try
    while high <= limit:
        tried[high] = trial(high)
        if tried[high][1] >= goal:
            break
        low, high = high, 8 * round(high * 1.25 / 8)
    else:
        return {"steps": limit, "reached": False}
    while high - low > 8:
        mid = 8 * ((low + high) // 16)
        tried[mid] = trial(mid)
        low, high = (low, mid) if tried[mid][1] >= goal else (mid, high)
    seconds, activation = tried[high]
    return {"steps": high, "seconds": round(seconds, 3), "activation": round(activation, 3),
            "reached": True, "trials": sorted(tried)}


def parse_sets(pairs: list[str]) -> dict[str, object]:
    """`KEY=VALUE` pairs → preset overrides (VALUE a Python literal; a bare word a string)."""
    out: dict[str, object] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def measure(renderer: Renderer, images: np.ndarray, units: list[int]) -> tuple[list, list]:
    """Channel mean of each unit on its image: as is, and upsampled to 224 (lucent's view)."""
    native = renderer.measure(images, units)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    up = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=True)
    at224 = renderer.measure(up, units)
    return [round(float(v), 3) for v in native], [round(float(v), 3) for v in at224]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lucent-path", help="folder lucent was installed into with --target")
    ap.add_argument("--layer", default="_blocks.8")
    ap.add_argument("--units", default="0,1")
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--preset", default="fast", help="our preset (its steps/size are replaced)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="rounds of (lucent, ours) per unit, the order alternating")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of our preset (repeatable)")
    ap.add_argument("--quality", action="store_true",
                    help="also the quality-normalized time (lucent's 512 steps; slow)")
    ap.add_argument("--quality-steps", type=int, default=512, help="lucent's steps for it")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    # as `deepvis` does at start; one process, so lucent's allocations get it too
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    lucent = import_lucent(args.lucent_path)
    units = [int(u) for u in args.units.split(",")]
    device = torch.device("cpu")  # lucent picks its device at import; CPU keeps both equal
    loaded = load_bundled(device)
    pre = loaded.preprocess
    renderer = Renderer(loaded, args.layer, device)
    # lucent leaves its hooks on the model it is given: give it a copy of its own
    theirs_model = copy.deepcopy(loaded.module)
    preset = dataclasses.replace(get_preset(args.preset).with_overrides(args.steps, args.size),
                                 **parse_sets(args.set))  # type: ignore[arg-type]

    # warm up both (first-call allocations), then alternate so load changes hit both alike
    run_job(render_units(loaded, args.layer, units[:1], preset.with_overrides(steps=2)))
    lucent_unit(theirs_model, args.layer, units[0], 2, args.size, pre.mean, pre.std, lucent)

    ours_single, theirs, pair_ratios = [], [], []
    lucent_images, our_images = [], []
    # `--repeats` rounds, who goes first alternating: this box's speed drifts by a third
    # within seconds, so one pair per unit is a noisy ratio; the median pair is reported
    for rep in range(args.repeats):
        for u in units:
            torch.manual_seed(u)
            np.random.seed(u)
            timed: dict[str, float] = {}
            for who in (("lucent", "ours") if rep % 2 == 0 else ("ours", "lucent")):
                if who == "lucent":
                    img, timed[who] = lucent_unit(theirs_model, args.layer, u, args.steps,
                                                  args.size, pre.mean, pre.std, lucent)
                else:
                    started = time.perf_counter()
                    final = run_job(render_units(loaded, args.layer, [u], preset, seed=u))
                    timed[who] = time.perf_counter() - started
            theirs.append(timed["lucent"])
            ours_single.append(timed["ours"])
            pair_ratios.append(timed["lucent"] / timed["ours"])
            if rep == 0:
                lucent_images.append(img)
                our_images.append(final.images[0])
    started = time.perf_counter()
    batched = run_job(render_units(loaded, args.layer, units, preset, seed=0))
    ours_batched = (time.perf_counter() - started) / len(units)

    ours_native, ours_224 = measure(renderer, np.stack(our_images), units)
    batch_native, _ = measure(renderer, batched.images, units)
    lucent_native, lucent_224 = measure(renderer, np.stack(lucent_images), units)
    report = {
        "model": loaded.name, "layer": args.layer, "units": units, "steps": args.steps,
        "size": args.size, "our_preset": preset.name, "threads": torch.get_num_threads(),
        "device": "cpu",
        "seconds_per_unit": {
            "lucent": round(float(np.mean(theirs)), 3),
            "ours_one_unit_per_call": round(float(np.mean(ours_single)), 3),
            "ours_batched": round(ours_batched, 3),
        },
        "speedup_vs_lucent": {
            "one_unit_per_call": round(float(np.mean(theirs) / np.mean(ours_single)), 2),
            "one_unit_per_call_median_pair": round(float(np.median(pair_ratios)), 2),
            "one_unit_per_call_pairs": [round(float(r), 2) for r in pair_ratios],
            "batched": round(float(np.mean(theirs) / ours_batched), 2),
        },
        "activation_at_image_size": {"lucent": lucent_native, "ours": ours_native,
                                     "ours_batched": batch_native},
        "activation_upsampled_to_224": {"lucent": lucent_224, "ours": ours_224},
    }
    if args.set:
        report["our_preset_overrides"] = parse_sets(args.set)
    if args.quality:
        quality = []
        for u in units:
            torch.manual_seed(u)
            np.random.seed(u)
            seconds, goal = lucent_to(theirs_model, args.layer, u, args.quality_steps, args.size,
                                      pre.mean, pre.std, lucent, renderer)
            ours = ours_to(loaded, args.layer, u, preset, goal)
            quality.append({"unit": u, "lucent_steps": args.quality_steps,
                            "lucent_seconds": round(seconds, 3),
                            "lucent_activation": round(goal, 3), "ours": ours,
                            "ours_over_lucent": (round(ours["seconds"] / seconds, 3)
                                                 if ours["reached"] else None)})
        report["quality_normalized"] = quality
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
