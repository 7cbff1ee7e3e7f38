"""`deepvis layers`: the recordable layers of a model with their output shapes."""

from __future__ import annotations

import argparse

from app.cli.common import add_common, load_for, print_json

NAME = "layers"
HELP = "recordable layers with output shapes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from app.engine.runtime.recorder import default_layer, discover_layers

    loaded, _ = load_for(args)
    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    if args.json:
        print_json({"model": loaded.name, "default_layer": default_layer(layers),
                    "layers": [{"name": i.name, "shape": list(i.shape), "kind": i.kind}
                               for i in layers]})
        return 0
    width = max(len(i.name) for i in layers)
    for info in layers:
        shape = "×".join(str(s) for s in info.shape)
        print(f"{info.name:{width}s}  {shape:>14s}  {info.kind}")
    return 0
