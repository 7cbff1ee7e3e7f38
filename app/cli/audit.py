"""`deepvis audit`: does the model treat groups of images differently, and through what?

    deepvis audit DATASET --groups G1 G2 [G ...] [--layers L [L ...]] [--classes K]
                  [--units U] [--runs N] [--method logistic|mean] [--seed S]
                  [--batch-size B] [--out DIR] [--json]

DATASET holds one folder per group, each sorted into class folders (`DATASET/<group>/
<class>/*.jpg`, a class by name or index). Per group: accuracy and the rate of each
predicted class, and the largest gaps between the groups; for the K classes with the largest
gaps, TCAV of each group's concept (its images against the other groups'); each group's
direction per layer, its U most aligned units, and what zeroing them or erasing the
direction does to the gaps and to accuracy (engine: `app.engine.analyses.tcav.audit`).
`--out DIR` writes `audit.html` (one self-contained page) and `audit.json`, atomically.
"""

from __future__ import annotations

import argparse
import sys
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
    from app.engine.analyses.tcav.audit import AuditResult

NAME = "audit"
HELP = "audit a labelled folder sorted into groups: gaps between groups, and their concepts"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("dataset", metavar="DATASET", help="DATASET/<group>/<class>/images")
    p.add_argument("--groups", required=True, nargs="+", metavar="G",
                   help="the group folders to compare (two at least)")
    p.add_argument("--layers", nargs="+", default=[], metavar="L",
                   help="layers for TCAV and the edits (default: the model's default layer)")
    p.add_argument("--classes", type=int, default=2,
                   help="classes with the largest gaps to examine (default 2)")
    p.add_argument("--units", type=int, default=3,
                   help="units most aligned with each group's direction (default 3)")
    p.add_argument("--runs", type=int, default=10, help="CAVs per TCAV test (default 10)")
    p.add_argument("--method", choices=("logistic", "mean"), default="logistic",
                   help="how CAVs are fitted (see `deepvis tcav`)")
    p.add_argument("--seed", type=int, default=0, help="random subsets and splits")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--out", type=Path, help="write audit.html and audit.json here")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    require_positive(batch_size=args.batch_size, classes=args.classes, units=args.units)
    if args.runs < 2:
        raise CliError(f"--runs must be 2 at least (a t-test needs two scores), got "
                       f"{args.runs}")
    root = Path(args.dataset).expanduser()
    if not root.is_dir():
        raise CliError(f"dataset folder not found: {root}")
    for group in args.groups:  # before the model loads: the quick mistakes first
        if not (root / group).is_dir():
            raise CliError(f"group folder not found: {root / group}")
    loaded, settings = load_for(args)
    from app.engine.analyses.tcav.audit import AuditError, run_audit
    from app.engine.analyses.tcav.audit_page import write_report

    try:
        result = drive(run_audit(
            loaded, root, args.groups, args.layers, classes=args.classes, units=args.units,
            runs=args.runs, method=args.method, seed=args.seed, batch_size=args.batch_size,
            cache_dir=settings.cache.dir, max_pixels=settings.source.max_image_pixels,
            max_side=settings.source.max_frame_side), "audit", None)
    except AuditError as exc:
        raise CliError(str(exc)) from None
    if args.out is not None:
        html_path, _ = write_report(result, args.out)
        print(f"report: {html_path}", file=sys.stderr)
    if args.json:
        print_json(result.to_json())
    else:
        _print_summary(result)
    print_skipped(result.skipped)
    return 0


def _print_summary(r: AuditResult) -> None:
    names, base = r.class_names, r.baseline
    print(f"{r.model}: audit of {r.dataset}, groups {', '.join(r.groups)}; "
          f"accuracy {base.accuracy:.3f}, gap {base.accuracy_gap:.3f}; {r.seconds:.1f} s")
    width = max(5, *(len(g) for g in r.groups))
    print(f"{'group':{width}s}  images  accuracy  " + "  ".join(
        f"rate {names[c]}" for c in r.examined))
    for g in r.groups:
        print(f"{g:{width}s}  {r.group_images[g]:6d}  {base.group_accuracy[g]:8.3f}  "
              + "  ".join(f"{base.group_rates[g][c]:{5 + len(names[c])}.3f}"
                          for c in r.examined))
    print("largest gaps in predicted rate: " + ", ".join(
        f"{names[c]} {base.rate_gaps[c]:.3f}" for c in r.examined))
    print("TCAV of each group's concept (score, p-value, significant):")
    for g, c, t in r.tcav:
        for s in t.layers:
            print(f"  {g} → {names[c]} at {s.layer}: {s.score:.3f}  p {s.p_value:.2g}  "
                  f"{'yes' if s.significant else 'no'}")
    print("units most aligned with each group's direction (CAV component):")
    for d in r.directions:
        units = ", ".join(f"{u} ({w:+.2f})" for u, w in d.units)
        print(f"  {d.group} at {d.layer}: {units}")
    print("edits (accuracy, accuracy gap):")
    for e in r.edits:
        print(f"  {e.edit:15s} {e.group} at {e.layer}: accuracy {e.accuracy:.3f}, "
              f"gap {e.accuracy_gap:.3f}")
