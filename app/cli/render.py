"""`deepvis render`: preferred images of units by regularized gradient ascent, as PNGs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from app.cli.common import CliError, add_common, load_for, print_json, settings_for
from app.cli.ranks import drive, is_root, join_ranks
from app.core.settings import MAX_RENDER_SIZE, RENDER_PRESETS

NAME = "render"
HELP = "preferred images of units by regularized gradient ascent"
PRESET_NAMES = RENDER_PRESETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--layer", required=True,
                   help="layer (dotted module name, see `deepvis layers`)")
    p.add_argument("--units", required=True, metavar="SPEC", help="3, 0-15 or 1,4,9")
    p.add_argument("--steps", type=int, help="optimization steps (default: the preset's)")
    p.add_argument("--size", type=int, help="image side in pixels (default: the preset's)")
    p.add_argument("--preset", choices=PRESET_NAMES,
                   help="fast (ours), lucid (Olah 2017), yosinski2015 or maco (Fel 2023) "
                        "(default: settings)")
    p.add_argument("--diversity", type=int, metavar="N",
                   help="N images per unit, pushed apart by a diversity term")
    p.add_argument("--spectrum", type=Path, metavar="F",
                   help="maco: magnitude spectrum, a .npz from `deepvis spectrum` or a folder "
                        "of images (default: the bundled one)")
    p.add_argument("--objective", choices=("channel", "neuron"), default="channel",
                   help="maximize the channel's mean (default) or its center neuron")
    p.add_argument("--seed", type=int, help="random seed (default: settings)")
    p.add_argument("--batch", type=int, help="units optimized together (default: settings)")
    p.add_argument("--out", type=Path,
                   help="folder for the PNGs (default: the model's folder in the cache)")
    p.add_argument("--sheet", type=Path, metavar="PNG",
                   help="also write all units in one labelled grid image (a contact sheet)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--json", action="store_true")


def _scan_best(root: Path, key: str, layer: str) -> dict[int, float] | None:
    """Best activation (map maximum) per unit over the scanned dataset, if a scan is cached."""
    from app.core.scan_results import load_scan

    scan = load_scan(root, key, layer)
    if scan is None:
        return None
    best = {}
    for unit in range(scan.units):
        top = scan.top(unit)
        if top:
            best[unit] = float(top[0].value)
    return best


def run(args: argparse.Namespace) -> int:
    from app.core.files import safe_filename
    from app.core.units import parse_units

    settings = settings_for(args)
    preset_name = args.preset or settings.render.preset
    if preset_name not in PRESET_NAMES:
        raise CliError(f"[render].preset {preset_name!r}: use one of {', '.join(PRESET_NAMES)}")
    for flag, value in (("--steps", args.steps), ("--size", args.size), ("--batch", args.batch),
                        ("--diversity", args.diversity)):
        if value is not None and value <= 0:
            raise CliError(f"{flag} must be positive")
    if args.size is not None and not 16 <= args.size <= MAX_RENDER_SIZE:
        raise CliError(f"--size must be between 16 and {MAX_RENDER_SIZE} pixels")
    if args.sheet is not None and args.sheet.suffix.lower() != ".png":
        raise CliError(f"--sheet {args.sheet}: the contact sheet is written as a .png")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {args.out} exists and is not a folder")
    parse_units(args.units)  # a bad spec fails before the model loads
    seed = settings.render.seed if args.seed is None else args.seed
    batch = args.batch or settings.render.batch_size
    if batch <= 0:
        raise CliError("[render].batch_size must be positive")

    diversity = args.diversity or 1
    if args.spectrum is not None and not args.spectrum.exists():
        raise CliError(f"--spectrum {args.spectrum}: no such file or folder")

    ranks = join_ranks(args)  # torchrun: every rank renders its batches of units
    loaded, settings = load_for(args)
    spectrum = _spectrum(args.spectrum, settings) if args.spectrum is not None else None
    from app.core.atomic import atomic_write_bytes
    from app.engine.analyses.featurevis import get_preset, render_units
    from app.engine.analyses.featurevis.render_cache import encode_png
    from app.engine.runtime.cache import cache_root, model_key, writable_cache
    from app.engine.runtime.directions import direction_layers
    from app.engine.runtime.recorder import discover_layers, split_layer_name

    directions = direction_layers(loaded, [args.layer], settings.cache.dir)
    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device,
                                [d.set for d in directions.values()])
    shapes = {info.name: info.shape for info in layers}
    if args.layer not in shapes and split_layer_name(args.layer)[0] not in dict(
            loaded.module.named_modules()):
        raise CliError(f"no layer {args.layer!r} in {loaded.name} (see `deepvis layers`)")
    channels = shapes[args.layer][0] if args.layer in shapes else None
    units = parse_units(args.units, channels)
    preset = get_preset(preset_name).with_overrides(
        args.steps or settings.render.steps or None, args.size or settings.render.size or None)
    # an unwritable [cache].dir is one line before any step is spent
    root = (cache_root if args.no_cache else writable_cache)(settings.cache.dir)
    key = model_key(loaded)

    if is_root(ranks):  # at once: the first step comes after the model copy is made
        per_batch = max(1, batch // diversity)
        batches = -(-len(units) // per_batch)
        print(f"render: {len(units)} units of {args.layer}, {preset.name} preset, "
              f"{preset.steps} steps at {preset.size} px, in {batches} "
              f"batch{'es' if batches > 1 else ''} of up to {per_batch}", file=sys.stderr)
    started = time.perf_counter()
    result = drive(render_units(loaded, args.layer, units, preset, seed=seed,
                                cache_root=None if args.no_cache else root,
                                objective=args.objective, batch_size=batch, ranks=ranks,
                                diversity=diversity, spectrum=spectrum,
                                directions=directions.get(args.layer)),
                   "render", ranks)
    if not is_root(ranks):
        return 0  # rank 0 writes the PNGs and prints the whole result
    elapsed = time.perf_counter() - started
    if diversity > 1:
        _write_diverse(args, loaded.name, result, preset, seed, elapsed, root, key)
        return 0
    finals = {u: (result.images[i], float(result.activations[i]), result.cached[i])
              for i, u in enumerate(result.units)}
    probability = ({} if result.probabilities is None else
                   {u: float(result.probabilities[i]) for i, u in enumerate(result.units)})

    best = _scan_best(root, key, args.layer)
    maxima: dict[int, float] = {}
    if best is not None:  # the scan ranks by map maximum: measure ours the same way
        import numpy as np

        from app.engine.analyses.featurevis import Renderer

        renderer = Renderer(loaded, args.layer, directions=directions.get(args.layer))
        values = renderer.measure(np.stack([finals[u][0] for u in units]), units, "max")
        maxima = {u: round(float(v), 6) for u, v in zip(units, values, strict=True)}
    safe_layer = safe_filename(args.layer)
    out = args.out if args.out is not None else root / key / "render-png" / safe_layer
    rows: list[dict[str, Any]] = []
    for u in units:
        image, activation, was_cached = finals[u]
        path = out / f"{safe_layer}_unit{u:04d}.png"
        atomic_write_bytes(path, encode_png(image))
        rows.append({"unit": u, "activation": round(activation, 6), "file": str(path),
                     "cached": was_cached, "activation_max": maxima.get(u),
                     "best_dataset_activation": None if best is None else best.get(u)})
        if probability:  # a class unit: how sure the network is of its own visualization
            rows[-1]["class"] = loaded.class_names[u] if u < len(loaded.class_names) else str(u)
            rows[-1]["probability"] = round(probability[u], 6)
    if args.sheet is not None:
        import numpy as np

        from app.engine.analyses.featurevis import contact_sheet

        sheet = contact_sheet(
            np.stack([finals[u][0] for u in units]),
            [f"{u}: {finals[u][1]:.1f}" for u in units],
            title=f"{loaded.name} {args.layer} - {preset.name}, {preset.steps} steps, "
                  f"{preset.size} px (unit: activation)")
        atomic_write_bytes(args.sheet, encode_png(sheet))
    print(f"render: {len(rows)} PNGs in {out}", file=sys.stderr)
    if args.json:
        print_json({
            "model": loaded.name, "layer": args.layer, "preset": preset.name,
            "objective": args.objective, "steps": preset.steps, "size": preset.size,
            "seed": seed, "device": str(loaded.device),
            "seconds": round(elapsed, 3), "seconds_per_unit": round(elapsed / len(units), 3),
            "units": rows, "sheet": None if args.sheet is None else str(args.sheet),
        })
        return 0
    for row in rows:
        extra = "" if row["best_dataset_activation"] is None else \
            f"  (map max {row['activation_max']:.3f}, best in dataset " \
            f"{row['best_dataset_activation']:.3f})"
        if "probability" in row:
            extra += f"  p({row['class']}) = {row['probability']:.4f}"
        print(f"unit {row['unit']:5d}  activation {row['activation']:9.3f}{extra}  {row['file']}")
    return 0


def _spectrum(path: Path, settings: Any) -> Any:
    """The maco spectrum of --spectrum: a .npz file, or a folder measured (and cached)."""
    from app.engine.analyses.featurevis.spectrum import (
        SpectrumError,
        dataset_spectrum,
        load_spectrum,
    )
    from app.engine.runtime.cache import cache_root

    try:
        if path.is_dir():
            from app.cli.progress import TextProgress
            from app.core.jobs import run_job

            bar = TextProgress("spectrum")
            try:
                return run_job(dataset_spectrum(path, cache_dir=cache_root(settings.cache.dir),
                                                max_pixels=settings.source.max_image_pixels),
                               bar).spectrum
            finally:
                bar.close()
        return load_spectrum(path)
    except SpectrumError as exc:
        raise CliError(str(exc)) from None


def _write_diverse(args: argparse.Namespace, model: str, result: Any, preset: Any, seed: int,
                   elapsed: float, root: Path, key: str) -> None:
    """--diversity N: N PNGs per unit (`…_unit0003_d1.png`) and their pairwise distances."""
    import numpy as np

    from app.core.atomic import atomic_write_bytes
    from app.core.files import safe_filename
    from app.engine.analyses.featurevis.render_cache import encode_png

    safe_layer = safe_filename(args.layer)
    out = args.out if args.out is not None else root / key / "render-png" / safe_layer
    rows: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    for i, u in enumerate(result.units):
        k = seen.get(u, 0)
        seen[u] = k + 1
        path = out / f"{safe_layer}_unit{u:04d}_d{k}.png"
        atomic_write_bytes(path, encode_png(result.images[i]))
        rows.append({"unit": u, "index": k, "activation": round(float(result.activations[i]), 6),
                     "file": str(path)})
    spread = {}
    for u in seen:  # mean pixel distance between the unit's images: how far apart they are
        imgs = result.images[[i for i, v in enumerate(result.units) if v == u]].astype(np.float32)
        d = [float(np.abs(imgs[a] - imgs[b]).mean()) / 255 for a in range(len(imgs))
             for b in range(a + 1, len(imgs))]
        spread[str(u)] = round(float(np.mean(d)), 6) if d else 0.0
    print(f"render: {len(rows)} PNGs in {out}", file=sys.stderr)
    if args.json:
        print_json({"model": model, "layer": args.layer, "preset": preset.name,
                    "objective": args.objective, "steps": preset.steps, "size": preset.size,
                    "seed": seed, "diversity": args.diversity,
                    "seconds": round(elapsed, 3), "images": rows,
                    "mean_pixel_distance": spread})
        return
    for row in rows:
        print(f"unit {row['unit']:5d} #{row['index']}  activation {row['activation']:9.3f}  "
              f"{row['file']}")
