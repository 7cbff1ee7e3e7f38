"""`deepvis layers`: the recordable layers of a model with their output shapes and layouts.

The layout says what the module outputs before it becomes the (C, H, W) map every view uses:
a conv map, transformer tokens (an h×w grid of patch tokens), the class/register tokens of
a token layer (`NAME:cls`, C×1×P), or a channels-last map (NHWC, permuted). A direction
layer (`SOURCE@TAG`: a concept dictionary learned by `deepvis concepts`, later CAVs) stored
for this model is listed right after its source, (K, H, W), kind "concepts".
"""

from __future__ import annotations

import argparse

from app.cli.common import add_common, load_for, print_json
from app.core.messages import LayerInfo

NAME = "layers"
HELP = "recordable layers with output shapes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from app.engine.runtime.directions import model_direction_sets
    from app.engine.runtime.recorder import default_layer, discover_layers

    loaded, settings = load_for(args)
    sets = model_direction_sets(loaded, settings.cache.dir).values()
    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device, sets)
    if args.json:
        print_json({"model": loaded.name, "default_layer": default_layer(layers),
                    "layers": [{"name": i.name, "shape": list(i.shape), "kind": i.kind,
                                "layout": i.layout, "layout_text": layout_text(i)}
                               for i in layers]})
        return 0
    width = max(len(i.name) for i in layers)
    for info in layers:
        shape = "×".join(str(s) for s in info.shape)
        print(f"{info.name:{width}s}  {shape:>14s}  {layout_text(info):22s}  {info.kind}")
    return 0


def layout_text(info: LayerInfo) -> str:
    """The layout in words: "conv map", "tokens 14×14 ×768", "1 class/register token"…"""
    c, h, w = (*info.shape, 1, 1, 1)[:3]
    if info.kind == "concepts":
        return f"{c} direction{'s' if c != 1 else ''} of the source"
    if info.layout == "tokens":
        return f"tokens {h}×{w}×{c}"
    if info.layout == "cls":
        return f"{w} class/register token" + ("s" if w > 1 else "")
    if info.layout == "nhwc":
        return f"nhwc {h}×{w}×{c} → nchw"
    return "output" if info.kind == "output" else "conv map"
