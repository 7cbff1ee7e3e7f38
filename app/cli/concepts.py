"""`deepvis concepts`: learn a layer's concept dictionary from a folder of images.

    deepvis concepts DATASET --layer L [--k K] [--method nmf|sae] [--samples N]
                     [--active A] [--iterations I] [--seed S] [--batch-size B]
                     [--out DIR] [--restart] [--json]

The layer's activation vectors at every position of every image are sampled (a fixed
budget, whatever the folder's size) and factorized: NMF of the positive part (default,
K = 32), or a TopK sparse autoencoder for large K. The dictionary (a K × C `.npy`, in
concept order) is cached per model, weights, preprocessing, folder, layer, method and K; an
interrupted run resumes where it stopped. The dictionary makes the concept layer
`LAYER@nmfK` (or `@saeK`). Under torchrun (`torchrun --nproc-per-node N -m app concepts …`)
the ranks split the images and rank 0 fits and writes the one-process dictionary.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import CliError, add_common, load_for, print_json, print_skipped, settings_for
from app.cli.ranks import drive, is_root, join_ranks

if TYPE_CHECKING:  # torch-heavy: imported when the command runs
    from app.engine.analyses.concepts import ConceptDictionary

NAME = "concepts"
HELP = "learn a layer's concepts (NMF or sparse-autoencoder directions) from a folder"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("dataset", metavar="DATASET", help="folder of images (searched recursively)")
    p.add_argument("--layer", required=True, metavar="L", help="the layer (see `deepvis layers`)")
    p.add_argument("--k", type=int, default=32, help="number of concepts (default 32)")
    p.add_argument("--method", choices=("nmf", "sae"), default="nmf",
                   help="nmf: NMF of the positive part (default); sae: TopK sparse autoencoder")
    p.add_argument("--samples", type=int, default=32768,
                   help="activation vectors sampled from the folder (default 32768)")
    p.add_argument("--active", type=int, help="sae: latents active per sample (default K/8, "
                   "at most 32)")
    p.add_argument("--iterations", type=int,
                   help="nmf: iteration cap (default 400); sae: optimizer steps (default 3000)")
    p.add_argument("--seed", type=int, default=0, help="sampling and initialization seed")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--out", type=Path, help="result folder instead of the cache")
    p.add_argument("--restart", action="store_true",
                   help="ignore checkpoints and cached results; learn from scratch")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    dataset = Path(args.dataset).expanduser()
    if not dataset.exists():
        raise CliError(f"dataset not found: {dataset}")
    for flag, value in (("--k", args.k), ("--samples", args.samples),
                        ("--batch-size", args.batch_size), ("--active", args.active),
                        ("--iterations", args.iterations)):
        if value is not None and value <= 0:
            raise CliError(f"{flag} must be positive, got {value}")
    if args.active is not None and args.active > args.k:
        raise CliError(f"--active must be at most --k ({args.k}), got {args.active}")
    ranks = join_ranks(args)  # torchrun: the ranks split the images, rank 0 fits
    loaded, settings = load_for(args)
    from app.engine.analyses.concepts import ConceptsError, learn_concepts

    try:
        result = drive(learn_concepts(
            loaded, dataset, args.layer, args.k, args.method, samples=args.samples,
            seed=args.seed, batch_size=args.batch_size, cache_dir=settings.cache.dir,
            out=args.out, max_pixels=settings.source.max_image_pixels,
            max_side=settings.source.max_frame_side, resume=not args.restart,
            iterations=args.iterations, active=args.active, ranks=ranks), "concepts", ranks)
    except ConceptsError as exc:
        raise CliError(str(exc)) from None
    if not is_root(ranks):
        return 0  # rank 0 prints the result
    if args.json:
        print_json(_doc(result))
        return 0
    _print_summary(loaded.name, result)
    return 0


def _doc(result: ConceptDictionary) -> dict[str, Any]:
    return {
        "concept_layer": result.concept_layer, "source_layer": result.source_layer,
        "k": result.k, "method": result.method, "images": result.images,
        "samples": result.samples, "relative_error": result.relative_error,
        "dictionary": str(result.path), "channels": result.channels,
        "signed": result.signed, "dead_concepts": result.dead, "cached": result.cached,
        "seconds": round(result.seconds, 3), "names": list(result.names),
        "skipped": [{"path": p, "reason": r} for p, r in result.skipped],
    }


def _print_summary(model: str, result: ConceptDictionary) -> None:
    how = "cached" if result.cached else f"learned in {result.seconds:.1f} s"
    what = ("NMF of the positive part" if result.method == "nmf"
            else f"TopK sparse autoencoder, {result.active} active")
    print(f"{model}: {result.concept_layer}: {result.k} concepts of {result.source_layer} "
          f"({result.channels} channels), {what}; {how}")
    print(f"  {result.samples} samples from {result.images} images; relative error "
          f"{result.relative_error:.4f}"
          + ("; the layer is signed: its negative part is left out" if result.signed
             and result.method == "nmf" else ""))
    if result.dead:
        print(f"  {result.dead} concept(s) unused by every sample (dead)")
    print(f"  dictionary: {result.path}")
    print_skipped(result.skipped)
