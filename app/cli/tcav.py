"""`deepvis tcav`: does a class depend on a concept given by example images (TCAV)?

    deepvis tcav --concept DIR --random DIR [DIR ...] --examples DIR --class C
                 --layers L [L ...] [--runs N] [--method logistic|mean] [--seed S]
                 [--batch-size B] [--out DIR] [--json]

Per layer: the concept activation vector's held-out accuracy, the TCAV score (the fraction
of the class's example images whose class logit grows along the CAV) over `--runs` CAVs
trained against different random sets, the scores of random-vs-random CAVs, the p-value of
a two-sided Student's t-test between the two, and whether it is significant after
Bonferroni's correction over the layers (p < 0.05 / layers). CAVs are cached per model,
layer, method, run and the exact files on each side.
"""

from __future__ import annotations

import argparse
import statistics as st
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import (
    CliError,
    add_common,
    load_for,
    print_json,
    print_skipped,
    require_positive,
)
from app.cli.ranks import drive

if TYPE_CHECKING:  # torch-heavy: imported when the command runs
    from app.engine.analyses.tcav import TcavResult

NAME = "tcav"
HELP = "test whether a class depends on a concept given by example images (TCAV)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--concept", required=True, metavar="DIR", help="images of the concept")
    p.add_argument("--random", required=True, nargs="+", metavar="DIR",
                   help="random images: several folders (one per run, cycled) or one "
                   "(random subsets of it)")
    p.add_argument("--examples", required=True, metavar="DIR",
                   help="images of the class whose dependence is tested")
    p.add_argument("--class", dest="target", required=True, metavar="C",
                   help="the class: an index or one of the model's class names")
    p.add_argument("--layers", required=True, nargs="+", metavar="L",
                   help="layers to test (see `deepvis layers`)")
    p.add_argument("--runs", type=int, default=10,
                   help="CAVs per layer, each against another random set (default 10)")
    p.add_argument("--method", choices=("logistic", "mean"), default="logistic",
                   help="logistic: L2-regularized logistic regression (default); mean: "
                   "FastCAV's normalized difference of means")
    p.add_argument("--seed", type=int, default=0, help="random subsets and splits")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--out", type=Path, help="CAV folder instead of the cache")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    require_positive(batch_size=args.batch_size)
    if args.runs < 2:
        raise CliError(f"--runs must be 2 at least (a t-test needs two scores), got "
                       f"{args.runs}")
    for flag, folder in (("--concept", args.concept), ("--examples", args.examples),
                         *(("--random", r) for r in args.random)):
        if not Path(folder).expanduser().is_dir():
            raise CliError(f"{flag} folder not found: {folder}")
    loaded, settings = load_for(args)
    from app.engine.analyses.tcav import TcavError, run_tcav

    try:
        result = drive(run_tcav(
            loaded, args.concept, args.random, args.examples, args.target, args.layers,
            runs=args.runs, method=args.method, seed=args.seed, batch_size=args.batch_size,
            cache_dir=settings.cache.dir, out=args.out,
            max_pixels=settings.source.max_image_pixels,
            max_side=settings.source.max_frame_side), "tcav", None)
    except TcavError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print_json(result.to_json())
    else:
        _print_table(result)
    print_skipped(result.skipped)
    return 0


def _print_table(result: TcavResult) -> None:
    cached = f", {result.cached_cavs} CAVs cached" if result.cached_cavs else ""
    print(f"{result.model}: TCAV of class {result.target} ({result.class_name}), "
          f"{result.runs} runs, {result.method} CAVs, {result.examples} examples"
          f"{cached}; {result.seconds:.1f} s")
    width = max(5, *(len(s.layer) for s in result.layers))
    print(f"{'layer':{width}s}  cav acc  score  ± sd   random ± sd   p-value  significant")
    for s in result.layers:
        print(f"{s.layer:{width}s}  {s.cav_accuracy:7.3f}  {s.score:5.3f}  "
              f"{st.stdev(s.scores):4.2f}   {st.mean(s.random_scores):5.3f}  "
              f"{st.stdev(s.random_scores):4.2f}  {s.p_value:8.2g}  "
              f"{'yes' if s.significant else 'no'}")
    print(f"significant: p < 0.05 / {len(result.layers)} layers = {result.threshold:.3g} "
          "(two-sided Student's t-test of the concept's scores against random CAVs)")
    if result.directions:
        print("the concept as a unit (its live map, render, scan, deletion): "
              + ", ".join(d.name for d in result.directions))
