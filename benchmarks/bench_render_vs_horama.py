"""Preferred images: our renderer against horama's `fourier` and `maco`, side by side in one run.

horama (PyPI `horama`, Fel et al.'s reference code for MACO) is the paper authors' toolbox.
Two comparisons, on the same model (the bundled EfficientNet-Lite0, its input normalization
applied inside horama's objective), the same units of one layer, the same model input size:

1. horama `fourier` (Lucid's parametrization as horama does it) against our preset `fast`,
   at equal steps (default 64).
2. horama `maco`, given OUR magnitude spectrum (the bundled one, exactly as our renderer uses
   it), against our preset `maco`, at equal steps (default 96, our preset's) and equal crops
   per step (4, our preset's), both on a canvas of `--size` px shown to the net at `--size`.

Reports seconds per unit and the activation each final image reaches, measured the same way
for both: the unit's channel mean on the clean image (no transforms, no noise) at `--size`
px, by our `Renderer.measure`; and their seconds ÷ ours. Ours and theirs alternate, unit by
unit (who goes first alternates too), in one process, so load changes hit both alike.

horama is never a dependency of the app. Install it into a throwaway folder:

    .venv/bin/python -m pip install --no-deps --target /tmp/peers horama einops
    .venv/bin/python benchmarks/bench_render_vs_horama.py --horama-path /tmp/peers

It needs torch, torchvision (`roi_align`), numpy, tqdm and matplotlib (imported by its
`plots`) besides einops; the app's environment has all but einops. Shims, all below:
- its progress bars (tqdm) are silenced (the loop is otherwise untouched);
- `maco` reads `spectrum_decorrelated.npy` from the working directory and downloads
  horama's ImageNet spectrum when the file is missing. The script writes ours there (in a
  temporary directory it works in, at the canvas size, so horama's resize is the identity),
  points horama's file name at it, and replaces horama's `download_url` with an error; an
  audit hook also refuses (and reports) any socket use in the process: no network, ever;
- matplotlib is stubbed only if it is not installed (horama imports it for plots only).

horama's images are in `values_range`; it is set to (0, 1) (`--horama-range`), the range our
images and `Renderer.forward` work in, and the objective normalizes as the model expects
(horama's default (-2.5, 2.5) is meant in the model's normalized units, and would span
-0.76…1.75 in pixels for this model: beyond any valid image). Its objective runs a copy of
the full model with a hook on the layer, as horama is used (`--horama-net truncated`: our
truncated, BN-folded copy instead). Everything else is horama's default, notably its crops:
`box_size` (0.20, 0.25) was chosen for its 1280-px canvas; on a canvas the size of the model
input the net sees a quarter of it blown up ~4×, and horama 0.3.0 draws crop sides in
[box[1], 2·box[1] − box[0]] = 0.25–0.30, not in [box[0], box[1]]. `--horama-box ours` gives
it our maco preset's crop sides (0.55–0.9) instead; `--fourier-crops` its fourier's crops
per step (6 by default; ours shows one transformed view per step).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib.util
import os
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import print_report  # noqa: E402  (benchmarks/report.py, beside this script)

from app.core.jobs import run_job  # noqa: E402
from app.core.malloc_tuning import keep_freed_memory  # noqa: E402
from app.engine.analyses.featurevis import get_preset, render_units  # noqa: E402
from app.engine.analyses.featurevis.param import COLOR_CORRELATION, unit_rms_magnitude  # noqa: E402
from app.engine.analyses.featurevis.presets import Preset  # noqa: E402
from app.engine.analyses.featurevis.render import Renderer, to_uint8  # noqa: E402
from app.engine.analyses.featurevis.spectrum import bundled_spectrum, magnitude_at  # noqa: E402
from app.engine.runtime.models import LoadedModel, load_bundled  # noqa: E402

SPECTRUM_FILE = "spectrum_decorrelated.npy"  # the name horama's maco looks for
NETWORK_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
                  "urllib.Request")
network_attempts: list[str] = []  # what the audit hook refused


class NetworkRefused(RuntimeError):
    """Something in this process tried to reach the network (horama downloading its spectrum)."""


def refuse_network() -> None:
    """Refuse any socket use in this process from now on, and keep a note of each attempt."""

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event in NETWORK_EVENTS:
            network_attempts.append(f"{event} {args[1:] if event == 'socket.connect' else args}")
            raise NetworkRefused(f"network use refused ({event}): this benchmark runs offline")

    sys.addaudithook(hook)


def _quiet(iterable, *args, **kwargs):  # type: ignore[no-untyped-def]
    """tqdm's stand-in: the loop without its progress bar."""
    return iterable


def import_horama(path: str | None, spectrum_path: Path) -> types.ModuleType:
    """horama, silenced, with `maco` reading `spectrum_path` and unable to download."""
    if path:
        sys.path.insert(0, str(Path(path).resolve()))
    os.environ.setdefault("MPLBACKEND", "Agg")
    if importlib.util.find_spec("matplotlib") is None:  # horama.plots only
        mpl = types.ModuleType("matplotlib")
        plt = types.ModuleType("matplotlib.pyplot")
        mpl.pyplot = plt  # type: ignore[attr-defined]
        sys.modules["matplotlib"], sys.modules["matplotlib.pyplot"] = mpl, plt
    try:
        import horama  # type: ignore[import-not-found]
        from horama import fourier_fv, maco_fv
    except ImportError as exc:
        raise SystemExit(f"horama not importable ({exc}); install it with\n  .venv/bin/python "
                         "-m pip install --no-deps --target /tmp/peers horama einops\nand pass "
                         "--horama-path /tmp/peers") from None
    for module in (fourier_fv, maco_fv):
        module.tqdm = _quiet

    def no_download(url: str, *args: object, **kwargs: object) -> None:
        raise NetworkRefused(
            f"horama wants to download {url} because it found no magnitude spectrum at "
            f"{maco_fv.MACO_SPECTRUM_FILENAME!r} (cwd {os.getcwd()}); this benchmark gives it "
            "ours and never downloads — horama's spectrum lookup has changed, update the shim")

    if not hasattr(maco_fv, "MACO_SPECTRUM_FILENAME") or not hasattr(maco_fv, "download_url"):
        raise SystemExit("this horama's maco finds its spectrum another way than 0.3.0's "
                         "(MACO_SPECTRUM_FILENAME / download_url): update the shim")
    maco_fv.download_url = no_download
    maco_fv.MACO_SPECTRUM_FILENAME = str(spectrum_path)
    return horama


def write_spectrum(directory: Path, size: int) -> tuple[Path, torch.Tensor]:
    """Our bundled spectrum as our MACO uses it at size×size (resampled by `magnitude_at`,
    DC zeroed and unit-RMS by `unit_rms_magnitude`), in horama's layout (3, H, W//2+1)."""
    magnitude = unit_rms_magnitude(magnitude_at(bundled_spectrum(), size, size), size, size)
    path = directory / SPECTRUM_FILE
    np.save(path, magnitude.numpy().astype(np.float32))
    return path, magnitude


@contextlib.contextmanager
def working_in(directory: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


class LayerHook:
    """The output of `layer` of a full model, kept by a forward hook on each pass."""

    def __init__(self, model: torch.nn.Module, layer: str) -> None:
        if ":" in layer:
            raise SystemExit(f"--horama-net full: cannot hook one call of {layer!r}; "
                             "use --horama-net truncated")
        self.model = model
        self.out: torch.Tensor | None = None
        model.get_submodule(layer).register_forward_hook(self._keep)

    def _keep(self, _module, _inputs, output) -> None:  # type: ignore[no-untyped-def]
        self.out = output

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.out = None
        self.model(x)
        assert self.out is not None
        return self.out


def horama_objective(net: Callable[[torch.Tensor], torch.Tensor], unit: int
                     ) -> Callable[[torch.Tensor], torch.Tensor]:
    """horama's objective: the unit's channel mean over the crops (its batch) it is shown.
    `net`: the layer's output for [0, 1] images (it applies the model's normalization)."""

    def objective(crops: torch.Tensor) -> torch.Tensor:
        return net(crops)[:, unit].mean()

    return objective


def horama_image(image: torch.Tensor) -> np.ndarray:
    """horama's (3, H, W) image, in pixel units (its `values_range` is given in [0, 1] units
    here) → (H, W, 3) uint8 RGB, clipped to [0, 1] and rounded as ours are (`to_uint8`)."""
    return to_uint8(image.detach()[None])[0]


def parse_pair(text: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in text.split(","))
    return lo, hi


def horama_box(choice: str, ours: tuple[float, float]) -> tuple[float, float]:
    """horama's `box_size` for --horama-box. horama 0.3.0 draws each crop's side uniformly in
    [box[1], 2·box[1] − box[0]] (it adds box[1] where box[0] is meant), so 'ours' asks for
    the box whose draws span our crop_box (lo, hi): (2·lo − hi, lo)."""
    if choice == "horama":
        return 0.20, 0.25
    if choice == "ours":
        lo, hi = ours
        return round(2 * lo - hi, 6), lo
    return parse_pair(choice)


def run_horama(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]],
               objective: Callable[[torch.Tensor], torch.Tensor], seed: int,
               **kwargs: object) -> tuple[np.ndarray, float]:
    torch.manual_seed(seed)  # horama draws its init and crops from torch's global generator
    np.random.seed(seed)
    started = time.perf_counter()
    image, _alpha = fn(objective, device="cpu", **kwargs)  # both return (image, transparency)
    elapsed = time.perf_counter() - started
    return horama_image(image), elapsed


def run_ours(loaded: LoadedModel, layer: str, unit: int, preset: Preset
             ) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    final = run_job(render_units(loaded, layer, [unit], preset, seed=unit))
    return final.images[0], time.perf_counter() - started


def measure(renderer: Renderer, images: list[np.ndarray], units: list[int], size: int
            ) -> list[float]:
    """Each unit's channel mean on its clean image, at size×size (resized if not)."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True)
    return [round(float(v), 3) for v in renderer.measure(x, units)]


def compare(name: str, units: list[int], theirs: Callable[[int], tuple[np.ndarray, float]],
            ours: Callable[[int], tuple[np.ndarray, float]], renderer: Renderer, size: int,
            save_dir: Path | None) -> dict[str, Any]:
    """Both tools on every unit, alternating who goes first; seconds and activations."""
    results: dict[str, tuple[list[np.ndarray], list[float]]] = {"horama": ([], []),
                                                                "ours": ([], [])}
    for i, u in enumerate(units):
        order = [("horama", theirs), ("ours", ours)]
        for tool, fn in order if i % 2 == 0 else order[::-1]:
            img, t = fn(u)
            results[tool][0].append(img)
            results[tool][1].append(t)
    out: dict[str, Any] = {"seconds_per_unit": {}, "seconds_each": {}, "activation": {},
                           "image_std": {}}
    for tool, (images, seconds) in results.items():
        out["seconds_per_unit"][tool] = round(float(np.mean(seconds)), 3)
        out["seconds_each"][tool] = [round(t, 2) for t in seconds]
        out["activation"][tool] = measure(renderer, images, units, size)
        out["image_std"][tool] = [round(float(im.std()), 1) for im in images]
        if save_dir is not None:
            import cv2

            for u, im in zip(units, images, strict=True):
                cv2.imwrite(str(save_dir / f"{name}-{tool}-unit{u}.png"), im[..., ::-1])
    sec = out["seconds_per_unit"]
    out["horama_over_ours_seconds"] = round(sec["horama"] / sec["ours"], 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--horama-path", help="folder horama (and einops) were installed into "
                                          "with --target")
    ap.add_argument("--layer", default="_blocks.8")
    ap.add_argument("--units", default="0,1")
    ap.add_argument("--steps-fourier", type=int, default=64)
    ap.add_argument("--steps-maco", type=int, default=96, help="default: our maco preset's")
    ap.add_argument("--size", type=int, default=224,
                    help="model input side, canvas side (both tools) and where it is measured")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--horama-net", choices=("full", "truncated"), default="full",
                    help="what horama's objective runs: a copy of the full model with a hook "
                         "on the layer (as horama is used), or our truncated copy "
                         "(Renderer.forward: nothing above the layer, batch norms folded)")
    ap.add_argument("--fourier-crops", type=int, default=6,
                    help="horama fourier's crops per step (default: horama's own, 6)")
    ap.add_argument("--horama-box", default="horama",
                    help="horama's box_size: 'horama' (its default, (0.20, 0.25)), 'ours' (so "
                         "its crop sides span our maco preset's crop_box) or LO,HI. horama "
                         "0.3.0 draws crop sides in [HI, 2·HI−LO], not [LO, HI]")
    ap.add_argument("--horama-range", default="0,1",
                    help="horama's values_range in pixel units, [0, 1] = the valid image "
                         "(the objective normalizes). Its default (-2.5, 2.5) is meant in the "
                         "model's normalized units: for this model -0.757,1.753")
    ap.add_argument("--save-dir", type=Path, help="write every final image there as PNG")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    # as `deepvis` does at start; one process, so horama's allocations get it too
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    refuse_network()
    load_start = os.getloadavg()
    units = [int(u) for u in args.units.split(",")]
    size = args.size
    values_range = parse_pair(args.horama_range)
    save_dir = args.save_dir.resolve() if args.save_dir else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu")
    loaded = load_bundled(device)
    pre = loaded.preprocess
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    meter = Renderer(loaded, args.layer, device)  # measures both tools' images

    net: Callable[[torch.Tensor], torch.Tensor]
    if args.horama_net == "full":  # a copy of its own for the hook; eval, no weight grads
        hooked = LayerHook(copy.deepcopy(loaded.module), args.layer)

        def net(x: torch.Tensor) -> torch.Tensor:
            return hooked((x - mean) / std)

        net_note = "full model (a deepcopy, eval, no weight grads) + forward hook on the layer"
    else:
        net = Renderer(loaded, args.layer, device).forward  # its own copy; normalizes itself
        net_note = "our truncated copy (Renderer.forward: stops at the layer, BN folded)"

    fast = get_preset("fast").with_overrides(args.steps_fourier, size)
    base_maco = get_preset("maco")
    ours_maco = dataclasses.replace(base_maco, steps=args.steps_maco, size=size, crop_size=size)
    box = horama_box(args.horama_box, ours_maco.crop_box)
    sides = (box[1], 2 * box[1] - box[0])  # what horama 0.3.0 draws from box_size

    with tempfile.TemporaryDirectory(prefix="horama-bench-") as tmp, working_in(Path(tmp)):
        spectrum_path, magnitude = write_spectrum(Path(tmp), size)
        horama = import_horama(args.horama_path, spectrum_path)
        # what horama's maco will load: ours, unchanged by its resize
        loaded_mag, _ = horama.maco_fv.init_maco_buffer((size, size))
        spectrum_diff = float((loaded_mag - magnitude).abs().max() / magnitude.abs().max())
        horama_colours = horama.common.get_color_correlation_svd_sqrt("cpu")
        colours_match = bool(torch.allclose(horama_colours.T, COLOR_CORRELATION, atol=2e-3))

        common = dict(image_size=size, model_input_size=size, values_range=values_range,
                      box_size=box)
        f_kwargs = dict(common, total_steps=args.steps_fourier,
                        crops_per_iteration=args.fourier_crops)
        m_kwargs = dict(common, total_steps=args.steps_maco,
                        crops_per_iteration=ours_maco.crops)

        def theirs_fourier(u: int, steps: int | None = None) -> tuple[np.ndarray, float]:
            kw = dict(f_kwargs, total_steps=steps or f_kwargs["total_steps"])
            return run_horama(horama.fourier, horama_objective(net, u), u, **kw)

        def theirs_maco(u: int, steps: int | None = None) -> tuple[np.ndarray, float]:
            kw = dict(m_kwargs, total_steps=steps or m_kwargs["total_steps"])
            return run_horama(horama.maco, horama_objective(net, u), u, **kw)

        # warm up all four (first-call allocations, the truncated copies' tuning)
        theirs_fourier(units[0], 2)
        run_ours(loaded, args.layer, units[0], fast.with_overrides(steps=2))
        theirs_maco(units[0], 2)
        run_ours(loaded, args.layer, units[0], ours_maco.with_overrides(steps=2))

        fourier_out = compare(
            "fourier", units, theirs_fourier,
            lambda u: run_ours(loaded, args.layer, u, fast), meter, size, save_dir)
        maco_out = compare(
            "maco", units, theirs_maco,
            lambda u: run_ours(loaded, args.layer, u, ours_maco), meter, size, save_dir)

    h_defaults = "NAdam lr 1.0, noise 0.05 (Gaussian + uniform), decay_power 1.5 (fourier)"
    report = {
        "model": loaded.name, "layer": args.layer, "units": units,
        "threads": torch.get_num_threads(), "device": "cpu",
        "load_average_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "horama_version": getattr(horama, "__version__", "?"),
        "model_input_and_canvas_px": size,
        "measured": f"channel mean of the unit on the clean final image at {size} px "
                    "(Renderer.measure, no transforms)",
        "horama_net": net_note,
        "ours_net": "truncated at the layer (private copy, BN folded, channels-last)",
        "timing": "wall clock of one call per unit; ours reuses the truncated, folded copy "
                  "the warm-up call made (as a second click on a layer does in the app), "
                  "horama's model copy is made once, untimed",
        "horama_settings": f"values_range {values_range} (pixel units) + the model's "
                           f"normalization in the objective; box_size {box}: crop sides "
                           f"{sides[0]:.2f}–{sides[1]:.2f} of the canvas; {h_defaults}",
        "fourier_setup": {
            "steps": args.steps_fourier,
            "horama": f"fourier, {args.fourier_crops} crops/step of {size} px",
            "ours": f"preset fast ({fast.optimizer} lr {fast.lr}, transforms "
                    f"{fast.transforms}, decay_power {fast.decay_power}, one view/step at "
                    f"{fast.size} px)",
        },
        "fourier": fourier_out,
        "maco_setup": {
            "steps": args.steps_maco, "crops_per_step": ours_maco.crops,
            "horama": f"maco with our spectrum, canvas {size}, crops at {size} px, box {box}",
            "ours": f"preset maco, canvas {ours_maco.size} (preset: {base_maco.size}), crops "
                    f"at {ours_maco.crop_size} px (preset: {base_maco.crop_size}), box "
                    f"{ours_maco.crop_box}, noise {ours_maco.noise}",
        },
        "maco": maco_out,
        "spectrum": f"ours (bundled) at {size}x{size}, as {SPECTRUM_FILE} in a temp dir; "
                    f"horama loaded it with max rel. diff {spectrum_diff:.1e}",
        "colour_matrix_same_as_ours": colours_match,
        "network_attempts": network_attempts,
    }
    if save_dir is not None:
        report["images"] = str(save_dir)
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except NetworkRefused as exc:  # horama tried to download: say so, no traceback
        raise SystemExit(f"error: {exc}") from None
