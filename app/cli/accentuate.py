"""`deepvis accentuate`: raise one unit's activation in an image while keeping the image."""

from __future__ import annotations

import argparse
import sys
import time

from app.cli.common import CliError, load_for, print_json
from app.cli.frames import add_frame_arguments, check_frame_arguments, default_out, layer_channels
from app.cli.progress import TextProgress

NAME = "accentuate"
HELP = ("feature accentuation (Hamblin et al. 2024): the image, changed just enough to drive "
        "one unit up")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_frame_arguments(p)
    p.add_argument("--layer", required=True, help="layer (dotted module name)")
    p.add_argument("--unit", required=True, type=int, help="channel of the layer")
    p.add_argument("--objective", choices=("channel", "neuron"), default="channel",
                   help="raise the channel's mean (default) or its centre neuron")
    p.add_argument("--pull", type=float,
                   help="weight of the pull toward the image (default: the recipe's; higher "
                        "stays closer)")


def run(args: argparse.Namespace) -> int:
    check_frame_arguments(args)
    if args.pull is not None and args.pull < 0:
        raise CliError(f"--pull must not be negative, got {args.pull}")
    from app.capture.images import read_image

    loaded, settings = load_for(args)
    image = read_image(args.image, settings.source.max_image_pixels)
    channels = layer_channels(loaded, args.layer)
    if channels is not None and not 0 <= args.unit < channels:
        raise CliError(f"--unit {args.unit} out of range: {args.layer} has {channels} channels")

    from app.core.atomic import atomic_write_bytes
    from app.core.jobs import run_job
    from app.engine.analyses.featurevis.frames import accentuate
    from app.engine.analyses.featurevis.render_cache import encode_png
    from app.engine.runtime.cache import cache_root, model_key

    started = time.perf_counter()
    bar = TextProgress("accentuate")
    try:
        result = run_job(accentuate(loaded, image, args.layer, args.unit, steps=args.steps,
                                    size=args.size, objective=args.objective, seed=args.seed,
                                    pull=args.pull), bar)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    out = args.out or default_out(cache_root(settings.cache.dir), model_key(loaded),
                                  "accentuate", args.image, args.layer, f"unit{args.unit}")
    atomic_write_bytes(out, encode_png(result.image))
    print(f"accentuate: {out}", file=sys.stderr)
    before, after = result.activation_before, result.activation_after
    if args.json:
        print_json({
            "model": loaded.name, "image": str(args.image), "layer": args.layer,
            "unit": args.unit, "objective": result.objective,
            "steps": args.steps, "size": int(result.image.shape[0]),
            "activation_before": round(before, 6), "activation_after": round(after, 6),
            "ratio": round(after / before, 6) if before > 0 else None,
            "psnr": round(result.psnr, 3), "file": str(out), "seconds": round(elapsed, 3),
            "device": str(loaded.device),
        })
        return 0
    print(f"{args.layer} unit {args.unit}: activation {before:.3f} → {after:.3f}, "
          f"PSNR {result.psnr:.1f} dB to the image  {out}")
    return 0
