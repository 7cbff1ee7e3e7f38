"""`deepvis atlas`: a layer's activation atlas over a folder of images.

    deepvis atlas DATASET --layer L [--grid N] [--per-image P] [--min-count M] [--seed S]
                  [--gradient-images G] [--batch-size B] [--out DIR] [--restart]
                  [--locate IMAGE ...] [--json]

P activation vectors per image (random positions, seeded), laid out by UMAP (cosine) and
binned into an N × N grid; each cell with at least M samples gets their mean as its
direction and the class that direction most supports (the layer's logit gradients, averaged
over the first G images, dotted with it) as its label. Writes DIR/atlas.png,
DIR/cells.json (x, y, count, icon, label, score per cell) and DIR/directions.npy (cells ×
channels, in cells.json order); DIR is the cache's folder for these inputs unless --out.
`--locate IMAGE` places every position of each image's map on the atlas (its nearest kept
sample by cosine, that sample's cell) and lists the cells it falls into. The cells are also
written as the direction layer L@atlasN (one linear unit per cell, in the cache's
directions/, or DIR/cells/ with --out), which the live view lists. A killed or interrupted
run resumes its collection where it stopped (--restart starts over). Under torchrun
(`torchrun --nproc-per-node N -m app atlas …`) the ranks split the images; rank 0 lays out,
labels, renders the icons and writes the one-process atlas.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.common import CliError, add_common, load_for, print_json, print_skipped, settings_for
from app.cli.ranks import drive, is_root, join_ranks

if TYPE_CHECKING:  # torch-heavy: imported when the command runs
    from app.engine.analyses.atlas import Atlas

NAME = "atlas"
HELP = "a layer's activation atlas: its activations over a folder, laid out and binned"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("dataset", metavar="DATASET", help="folder of images (searched recursively)")
    p.add_argument("--layer", required=True, metavar="L", help="the layer (see `deepvis layers`)")
    p.add_argument("--grid", type=int, default=20, metavar="N", help="N × N cells (default 20)")
    p.add_argument("--per-image", type=int, default=16, metavar="P",
                   help="activation vectors sampled per image (default 16)")
    p.add_argument("--min-count", type=int, default=3, metavar="M",
                   help="samples a cell needs to be drawn (default 3)")
    p.add_argument("--gradient-images", type=int, default=16, metavar="G",
                   help="images the labels' logit gradients are averaged over (default 16)")
    p.add_argument("--seed", type=int, default=0, help="sampling and layout seed")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--out", type=Path, metavar="DIR", help="result folder instead of the cache")
    p.add_argument("--restart", action="store_true",
                   help="ignore a cached atlas and any checkpoint; build anew")
    p.add_argument("--locate", nargs="+", type=Path, metavar="IMAGE", default=[],
                   help="images whose positions are placed on the atlas")
    p.add_argument("--icon-steps", type=int, default=128, metavar="S",
                   help="optimization steps of each cell's icon (default 128; 0: no icons)")
    p.add_argument("--icon-size", type=int, default=96, metavar="PX",
                   help="icon side in pixels (default 96)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    dataset = Path(args.dataset).expanduser()
    if not dataset.exists():
        raise CliError(f"dataset not found: {dataset}")
    for flag, value in (("--grid", args.grid), ("--per-image", args.per_image),
                        ("--min-count", args.min_count), ("--batch-size", args.batch_size),
                        ("--gradient-images", args.gradient_images),
                        ("--icon-size", args.icon_size)):
        if value <= 0:
            raise CliError(f"{flag} must be positive, got {value}")
    if args.icon_steps < 0:
        raise CliError(f"--icon-steps must be 0 or more, got {args.icon_steps}")
    for image in args.locate:
        if not image.is_file():
            raise CliError(f"image to locate not found: {image}")
    ranks = join_ranks(args)  # torchrun: every rank collects its batches, rank 0 the rest
    loaded, settings = load_for(args)
    from app.engine.analyses.atlas import AtlasError, build_atlas, locate_images
    from app.engine.workflows.atlas_icons import render_icons, write_icons

    try:
        atlas = drive(build_atlas(
            loaded, dataset, args.layer, grid=args.grid, per_image=args.per_image,
            min_count=args.min_count, seed=args.seed, batch_size=args.batch_size,
            gradient_images=args.gradient_images, cache_dir=settings.cache.dir, out=args.out,
            max_pixels=settings.source.max_image_pixels,
            max_side=settings.source.max_frame_side, resume=not args.restart, ranks=ranks),
            "atlas", ranks)
        if not is_root(ranks):
            return 0  # rank 0 renders the icons, writes and prints
        began = time.perf_counter()
        icons = (drive(render_icons(loaded, atlas, args.icon_steps, args.icon_size, args.seed),
                       "icons", None) if args.icon_steps else {})
        atlas.seconds["icons"] = time.perf_counter() - began
        write_icons(atlas, icons, args.icon_steps, args.icon_size, args.seed)
        located = locate_images(loaded, atlas, [str(p) for p in args.locate],
                                max_pixels=settings.source.max_image_pixels,
                                max_side=settings.source.max_frame_side)
    except AtlasError as exc:
        raise CliError(str(exc)) from None
    doc = _doc(atlas, located if args.locate else None)
    if args.json:
        print_json(doc)
        return 0
    _print_summary(loaded.name, atlas, doc)
    return 0


def _doc(atlas: Atlas, located: list[dict[str, Any]] | None) -> dict[str, Any]:
    cells = json.loads((atlas.folder / "cells.json").read_text())
    from app.engine.analyses.atlas import atlas_tag

    doc: dict[str, Any] = {
        "layer": atlas.layer, "grid": atlas.grid, "per_image": atlas.per_image,
        "direction_layer": f"{atlas.layer}@{atlas_tag(atlas.grid)}",
        "directions": str(atlas.cells_folder),
        "images": atlas.images, "samples": int(atlas.samples.shape[0]),
        "folder": str(atlas.folder), "cached": atlas.cached,
        "seconds": {k: round(v, 3) for k, v in atlas.seconds.items()}, "cells": cells,
        "skipped": [{"path": p, "reason": r} for p, r in atlas.skipped]}
    if located is not None:
        doc["located"] = located
    return doc


def _print_summary(model: str, atlas: Atlas, doc: dict[str, Any]) -> None:
    how = "cached" if atlas.cached else "built in " + ", ".join(
        f"{k} {v:.1f} s" for k, v in atlas.seconds.items())
    print(f"{model}: atlas of {atlas.layer}: {len(atlas.cells)} cells of {atlas.grid}×"
          f"{atlas.grid} from {doc['samples']} vectors of {atlas.images} images; {how}")
    for cell in sorted(atlas.cells, key=lambda c: -c.count)[:10]:
        print(f"  ({cell.x:2d},{cell.y:2d}) {cell.count:5d}  {cell.label} ({cell.score:.3g})")
    print(f"  {atlas.folder}/atlas.png, cells.json, directions.npy")
    print(f"  its cells are the units of the direction layer {doc['direction_layer']} "
          f"({atlas.cells_folder})")
    for entry in doc.get("located", []):
        where = ", ".join(f"({c['x']},{c['y']})×{c['positions']}" for c in entry["cells"][:8])
        print(f"  {entry['image']}: {where}")
    print_skipped(atlas.skipped)
