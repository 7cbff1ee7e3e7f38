"""`deepvis invert`: reconstruct an image from what a layer keeps of it."""

from __future__ import annotations

import argparse
import sys
import time

from app.cli.common import load_for, print_json
from app.cli.frames import add_frame_arguments, check_frame_arguments, default_out, layer_channels
from app.cli.progress import TextProgress

NAME = "invert"
HELP = ("feature inversion (Mahendran & Vedaldi 2015): an image rebuilt from a layer's code "
        "of IMAGE")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_frame_arguments(p)
    p.add_argument("--layer", required=True, action="append", metavar="L",
                   help="layer whose code is inverted (dotted name; repeat for several, "
                        "written side by side)")


def run(args: argparse.Namespace) -> int:
    check_frame_arguments(args)
    from app.capture.images import read_image

    loaded, settings = load_for(args)
    image = read_image(args.image, settings.source.max_image_pixels)
    layers = list(dict.fromkeys(args.layer))
    for layer in layers:
        layer_channels(loaded, layer)

    import numpy as np

    from app.core.atomic import atomic_write_bytes
    from app.core.jobs import run_job
    from app.engine.analyses.featurevis import contact_sheet
    from app.engine.analyses.featurevis.frames import invert
    from app.engine.analyses.featurevis.render_cache import encode_png
    from app.engine.runtime.cache import cache_root, model_key

    started = time.perf_counter()
    bar = TextProgress("invert")
    try:
        result = run_job(invert(loaded, image, layers, steps=args.steps, size=args.size,
                                seed=args.seed), bar)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    out = args.out or default_out(cache_root(settings.cache.dir), model_key(loaded), "invert",
                                  args.image, *layers)
    if len(result.layers) == 1:
        png = result.layers[0].image
    else:  # the frame, then each layer's reconstruction, labelled
        png = contact_sheet(np.stack([result.seed, *(r.image for r in result.layers)]),
                            ["image", *(f"{r.layer}: {r.code_error:.2f}" for r in result.layers)],
                            columns=len(result.layers) + 1)
    atomic_write_bytes(out, encode_png(png))
    print(f"invert: {out}", file=sys.stderr)
    rows = [{"layer": r.layer, "code_error": round(r.code_error, 6),
             "start_error": round(r.start_error, 6)} for r in result.layers]
    if args.json:
        print_json({
            "model": loaded.name, "image": str(args.image), "steps": args.steps,
            "size": int(result.seed.shape[0]), "code_error": rows[0]["code_error"],
            "layers": rows, "file": str(out), "seconds": round(elapsed, 3),
            "device": str(loaded.device),
        })
        return 0
    for row in rows:
        print(f"{row['layer']}: relative code error {row['start_error']:.3f} (noise) → "
              f"{row['code_error']:.3f}")
    print(out)
    return 0
