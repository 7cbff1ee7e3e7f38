"""What `accentuate` and `invert` share: the image, the layer check, the output file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.common import CliError, add_common, require_positive

if TYPE_CHECKING:  # torch-heavy: imported when a command runs
    from app.engine.runtime.models import LoadedModel


def add_frame_arguments(p: argparse.ArgumentParser) -> None:
    """IMAGE, --steps, --size, --seed, --out, --json and the common flags."""
    add_common(p)
    p.add_argument("image", metavar="IMAGE", type=Path, help="image file")
    p.add_argument("--steps", type=int, help="optimization steps (default: the recipe's)")
    p.add_argument("--size", type=int,
                   help="side of the result in pixels (default: the model's input size)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--out", type=Path, metavar="PNG",
                   help="where to write the result (default: in the model's cache folder)")
    p.add_argument("--json", action="store_true")


def check_frame_arguments(args: argparse.Namespace) -> None:
    """Flags that fail before the model loads."""
    from app.core.settings import MAX_RENDER_SIZE

    require_positive(steps=args.steps, size=args.size)
    if args.size is not None and not 16 <= args.size <= MAX_RENDER_SIZE:
        raise CliError(f"--size must be between 16 and {MAX_RENDER_SIZE} pixels")
    if args.out is not None and args.out.suffix.lower() != ".png":
        raise CliError(f"--out {args.out}: the result is written as a .png")


def layer_channels(loaded: LoadedModel, layer: str) -> int | None:
    """Channels of a recordable layer; CliError naming it when the model has no such layer."""
    from app.engine.runtime.recorder import discover_layers

    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    shapes = {info.name: info.shape for info in layers}
    if layer not in shapes:
        raise CliError(f"no recordable layer {layer!r} in {loaded.name} (see `deepvis layers`)")
    return int(shapes[layer][0])


def default_out(root: Path, key: str, kind: str, image: Path, *parts: object) -> Path:
    """<cache>/<model key>/<kind>/<image stem>_<parts>.png."""
    from app.core.files import safe_filename

    name = "_".join([image.stem, *(str(x) for x in parts)])
    return root / key / kind / f"{safe_filename(name)}.png"
