"""`deepvis spectrum`: the Fourier magnitude of a folder of images, for MACO renders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.common import CliError, add_common, print_json, require_positive, settings_for
from app.cli.progress import TextProgress

NAME = "spectrum"
HELP = ("mean Fourier magnitude of a folder's images, cached: the spectrum MACO renders keep "
        "(render --preset maco --spectrum F)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("dataset", metavar="DATASET", type=Path, help="folder of images (recursive)")
    p.add_argument("--size", type=int, help="side of the spectrum in pixels (default 256)")
    p.add_argument("--out", type=Path, metavar="F", help="also write the spectrum (.npz) here")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    require_positive(size=args.size)
    if not args.dataset.is_dir():
        raise CliError(f"{args.dataset}: not a folder")
    if args.out is not None and args.out.suffix.lower() != ".npz":
        raise CliError(f"--out {args.out}: a spectrum is written as a .npz")
    from app.core.jobs import run_job
    from app.engine.analyses.featurevis.spectrum import (
        DEFAULT_SIZE,
        SpectrumError,
        dataset_spectrum,
        save_spectrum,
    )
    from app.engine.runtime.cache import cache_root

    size = args.size or DEFAULT_SIZE
    if not 8 <= size <= 2048:
        raise CliError(f"--size must be between 8 and 2048 pixels, got {size}")
    settings = settings_for(args)
    bar = TextProgress("spectrum")
    try:
        result = run_job(dataset_spectrum(args.dataset, size, cache_root(settings.cache.dir),
                                          settings.source.max_image_pixels), bar)
    except SpectrumError as exc:
        raise CliError(str(exc)) from None
    finally:
        bar.close()
    if args.out is not None:
        save_spectrum(args.out, result.spectrum)
    print(f"spectrum: {result.path}", file=sys.stderr)
    doc = {"dataset": str(args.dataset), "images": result.spectrum.images, "size": size,
           "file": str(result.path), "cached": result.cached,
           "out": None if args.out is None else str(args.out),
           "skipped": list(result.skipped), "digest": result.spectrum.digest()}
    if args.json:
        print_json(doc)
        return 0
    print(f"{result.spectrum.images} images, {size} px{' (cached)' if result.cached else ''}: "
          f"{result.path}")
    return 0
