"""`deepvis explain`: why this prediction — the building blocks of one layer, per image."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import TYPE_CHECKING

from app.cli.common import CliError, add_common, load_for, print_result, require_positive
from app.cli.predict import _expand as expand_images
from app.cli.progress import TextProgress

NAME = "explain"
HELP = ("channel and spatial attribution of a class at a layer, semantic dictionary, neuron "
        "groups and a deletion test (Building Blocks)")
SHOWN = 8  # channels listed each way in the table

if TYPE_CHECKING:  # torch-heavy: imported when the command runs
    from app.engine.analyses.blocks.explain import ExplainReport


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files, or folders (every image in them, recursively)")
    p.add_argument("--layer", required=True, help="layer explained (dotted name)")
    p.add_argument("--class", dest="target", metavar="C",
                   help="class explained, by index or name (default: each image's top-1)")
    p.add_argument("--vs", metavar="C2", help="explain class C rather than C2: logit C − logit C2")
    p.add_argument("--groups", type=int, metavar="K", help="neuron groups ([blocks].groups)")
    p.add_argument("--integrated", type=int, nargs="?", const=0, metavar="N",
                   help="path-integrated attribution with N steps (alone: "
                   "[blocks].integrated_steps)")
    p.add_argument("--seeds", type=int, default=5,
                   help="random deletion sets averaged per k in the deletion test")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    require_positive(groups=args.groups, seeds=args.seeds)
    if args.integrated is not None and args.integrated < 0:
        raise CliError(f"--integrated must be positive, got {args.integrated}")
    paths = expand_images(args.images)
    loaded, settings = load_for(args)
    blocks = settings.blocks
    steps = 0 if args.integrated is None else args.integrated or blocks.integrated_steps

    from app.capture.images import read_image
    from app.core.class_names import ClassNameError
    from app.core.jobs import run_job
    from app.engine.analyses.blocks import BlocksError, ExplainRequest, class_score, explain_job
    from app.engine.runtime.directions import direction_layers
    from app.engine.runtime.recorder import discover_layers

    try:
        score = class_score(args.target, loaded.class_names, args.vs)
    except ClassNameError as exc:
        raise CliError(str(exc)) from None
    directions = direction_layers(loaded, [args.layer], settings.cache.dir)
    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device,
                                [d.set for d in directions.values()])
    if args.layer not in {info.name for info in layers}:
        raise CliError(f"no recordable layer {args.layer!r} in {loaded.name} "
                       "(see `deepvis layers`)")
    images = [(p, read_image(p, settings.source.max_image_pixels)) for p in paths]
    request = ExplainRequest(args.layer, score, groups=args.groups or blocks.groups,
                             dictionary_top=blocks.dictionary_top, integrated_steps=steps,
                             seeds=args.seeds)
    bar = TextProgress("explain")
    try:
        report = run_job(explain_job(loaded, images, request, directions=directions), bar)
    except BlocksError as exc:
        raise CliError(str(exc)) from None
    finally:
        bar.close()
    return print_result(report, args.json, _table)


def _table(report: ExplainReport) -> Iterator[str]:
    import numpy as np

    def name(index: int) -> str:
        names = report.class_names
        return f"{names[index] if index < len(names) else index} ({index})"

    c, h, w = report.shape
    yield f"{report.model}  {report.layer}  ({c} channels, {h}×{w})"
    for e in report.explanations:
        lin, integ, g, f = e.linear, e.integrated, e.groups, e.faithfulness
        what = name(e.target) + (f" vs {name(lin.vs)}" if lin.vs is not None else "")
        yield (f"\n{e.image}\n  {what}: score {lin.score:.3f}, "
               f"probability {lin.probability * 100:.1f}%  "
               f"[{'integrated' if integ else 'linear'} attribution]")
        if integ is not None:
            yield (f"  integrated, {integ.steps} steps: Σ {integ.total:.3f} vs score − "
                   f"baseline {integ.score - integ.baseline:.3f} (gap {integ.gap:+.3f})")
        order = np.argsort(-e.channels, kind="stable")
        top = ", ".join(f"{int(u)} ({e.channels[u]:+.3f})" for u in order[:SHOWN])
        low = ", ".join(f"{int(u)} ({e.channels[u]:+.3f})" for u in order[::-1][:SHOWN])
        yield f"  channels for:     {top}\n  channels against: {low}"
        groups = ("no gradient" if g.attribution is None
                  else ", ".join(f"{a:+.3f}" for a in g.attribution))
        yield (f"  {g.k} groups, attribution {groups}; NMF error "
               f"{g.relative_error:.3f} ({g.note})")
        yield f"  deletion test ({f.seeds} random seeds): intact {f.intact * 100:.1f}%"
        for k, top_p, rnd, sd in zip(f.ks, f.top_deleted, f.random_deleted, f.random_std,
                                     strict=True):
            yield (f"    {k:3d} deleted: top-attributed {top_p * 100:5.1f}%   "
                   f"random {rnd * 100:5.1f}% ± {sd * 100:.1f}")
