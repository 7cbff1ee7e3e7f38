"""`deepvis bench`: the live pipeline against bare `model(x)`, side by side in one run."""

from __future__ import annotations

import argparse

from app.cli.common import CliError, add_common, print_json, settings_for
from app.cli.progress import TextProgress

NAME = "bench"
HELP = "live pipeline against bare model(x), side by side"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p, source=True)
    p.add_argument("--frames", type=int, help="frames per measurement round")
    p.add_argument("--size", type=int, help="input size (default: the model's)")
    p.add_argument("--rounds", type=int, default=7, help="alternating bare/pipeline rounds")
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="run N competing CPU-bound processes during the measurement")
    p.add_argument("--no-gui", action="store_true", help="skip the GUI update measurement")
    p.add_argument("--layer", help="layer the pipeline shows (default: the default layer; a "
                                   "concept layer such as _blocks.8@nmf32 adds its codes)")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    if args.rounds < 1 or (args.frames is not None and args.frames < 1):
        raise CliError("--frames and --rounds must be positive")
    if args.load < 0:
        raise CliError("--load must be 0 or more")
    from app.core.jobs import run_job
    from app.gui.bench_timing import gui_update_ms
    from app.gui.qt_messages import route_qt_messages
    from app.session.bench import UnknownBenchLayer, bench

    route_qt_messages()  # the measured window's chatter ("propagateSizeHints") to the log
    progress = TextProgress("bench")
    try:
        report = run_job(bench(settings, source=args.source,
                               frames=args.frames or settings.bench.frames,
                               size=args.size or settings.bench.size, rounds=args.rounds,
                               load=args.load, layer=args.layer,
                               gui_timer=None if args.no_gui else gui_update_ms), progress)
    except UnknownBenchLayer as e:
        raise CliError(str(e)) from None
    finally:
        progress.close()
    if args.json:
        print_json(report)
    else:
        for key, value in report.items():
            print(f"{key:24s} {value}")
    return 0
