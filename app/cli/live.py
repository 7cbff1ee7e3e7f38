"""`deepvis` with no subcommand: the live window."""

from __future__ import annotations

import argparse
from pathlib import Path

from app.cli.common import CliError, add_common, settings_for

NAME = ""  # the default command: what `deepvis [flags]` runs
HELP = "the live window"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p, source=True)
    p.add_argument("--layer", help="layer to show first (dotted module name)")
    p.add_argument("--unit", type=int, help="unit to select first")
    p.add_argument("--screenshot", type=Path, help="run for --frames results, save a PNG, exit")
    p.add_argument("--frames", type=int, default=30, help="results to show before --screenshot")


def run(args: argparse.Namespace) -> int:
    settings = settings_for(args)
    if args.screenshot and args.frames <= 0:
        raise CliError("--frames must be positive with --screenshot")
    src = args.source
    if src and src != "auto" and not src.startswith("camera:") and not src.isdigit() \
            and not Path(src).expanduser().exists():
        raise CliError(f"source not found: {src}")
    if args.unit is not None and args.unit < 0:
        raise CliError("--unit must not be negative")
    from app.desktop import launch_window

    return launch_window(
        settings,
        source=args.source or settings.source.default,
        layer=args.layer or settings.view.layer or None,
        unit=args.unit,
        screenshot=args.screenshot,
        frames=args.frames,
    )
