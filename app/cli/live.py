"""`deepvis` with no subcommand: the live window."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from app.cli.common import CliError, add_common, load_for, settings_for
from app.core.x11_libraries import check_xcb_libraries

NAME = ""  # the default command: what `deepvis [flags]` runs
HELP = "the live window"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p, source=True)
    p.add_argument("--layer", help="layer to show first (dotted module name, or a concept "
                   "layer such as _blocks.11@nmf32 learned by `deepvis concepts`)")
    p.add_argument("--unit", type=int, help="unit to select first")
    p.add_argument("--screenshot", type=Path, help="run for --frames results, save a PNG, exit")
    p.add_argument("--frames", type=int, default=30, help="results to show before --screenshot")


def run(args: argparse.Namespace) -> int:
    # before anything slow: without them Qt aborts with a line that names nothing useful
    problem = check_xcb_libraries(os.environ)
    if problem:
        raise CliError(problem)
    settings = settings_for(args)
    if args.screenshot and args.frames <= 0:
        raise CliError("--frames must be positive with --screenshot")
    src = args.source
    if src and src != "auto" and not src.startswith("camera:") and not src.isdigit() \
            and not Path(src).expanduser().exists():
        raise CliError(f"source not found: {src}")
    if args.unit is not None and args.unit < 0:
        raise CliError("--unit must not be negative")
    if args.unit is not None or args.layer:
        _check_layer_and_unit(args, args.layer or settings.view.layer or None, args.unit)
    from app.desktop import launch_window

    return launch_window(
        settings,
        source=args.source or settings.source.default,
        layer=args.layer or settings.view.layer or None,
        unit=args.unit,
        screenshot=args.screenshot,
        frames=args.frames,
    )


def _check_layer_and_unit(args: argparse.Namespace, layer: str | None, unit: int | None) -> None:
    """--layer and --unit against the model, before any window opens (a second or two).

    A direction layer (`_blocks.11@nmf32`, `_blocks.8@cav-stripes`, `_blocks.11@atlas20`) is
    a layer here when the window will have it: a complete set of this model in the cache,
    which the live view loads at start (`model_direction_sets`, the same reader)."""
    from app.engine.runtime.directions import is_direction_layer, model_direction_sets
    from app.engine.runtime.recorder import default_layer, discover_layers

    loaded, settings = load_for(args)
    sets = list(model_direction_sets(loaded, settings.cache.dir).values())
    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device, sets)
    channels = {info.name: info.channels for info in layers}
    if layer is not None and layer not in channels:
        if is_direction_layer(layer):
            known = sorted(n for n in channels if is_direction_layer(n))
            there = (f"the cache has {', '.join(known)}" if known else
                     "none is learned yet: `deepvis concepts DATASET --layer LAYER`")
            raise CliError(f"--layer {layer}: no such direction layer of {loaded.name} "
                           f"({there})")
        raise CliError(f"--layer {layer}: no such layer in {loaded.name} (see `deepvis layers`)")
    name = layer or default_layer(layers)
    if unit is not None and unit >= channels[name]:
        raise CliError(f"--unit {unit}: {name} has {channels[name]} units (0-{channels[name] - 1})")
