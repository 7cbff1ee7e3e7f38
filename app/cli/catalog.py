"""`deepvis catalog`: a static, offline site of a model with one page per unit.

    deepvis catalog --layers L... [--units SPEC] --out DIR [--seeds N] [--json]

Each unit's page (`DIR/LAYER/UNIT.html`) shows its preferred images (rendered with the
settings' preset, N seeds, through the render cache), its top dataset patches if a scan of
the layer is cached, its class selectivity and place in the ablation curves if those are
cached, and links to its neighbours; `DIR/index.html` lists the layers. Open it from the
file system: no server, no network.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli.common import CliError, add_common, load_for, print_json, settings_for
from app.cli.progress import TextProgress

NAME = "catalog"
HELP = "a static offline site of the model: a page per unit, an index per layer"
MAX_SEEDS = 16


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    p.add_argument("--layers", nargs="+", required=True, metavar="L",
                   help="layers to catalogue (dotted module names or concept layers such as "
                        "_blocks.11@nmf32, see `deepvis layers`)")
    p.add_argument("--units", metavar="SPEC",
                   help="units of every layer: 3, 0-15 or 1,4,9 (default: all)")
    p.add_argument("--out", type=Path, required=True, help="folder for the site")
    p.add_argument("--seeds", type=int, default=4,
                   help="preferred images per unit, each from another seed (default: 4)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    from app.core.units import parse_units

    settings = settings_for(args)
    if not 1 <= args.seeds <= MAX_SEEDS:
        raise CliError(f"--seeds must be between 1 and {MAX_SEEDS}")
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {args.out} exists and is not a folder")
    if args.units is not None:
        parse_units(args.units)  # a bad spec fails before the model loads
    from app.core.settings import RENDER_PRESETS

    if settings.render.preset not in RENDER_PRESETS:
        raise CliError(f"[render].preset {settings.render.preset!r}: use one of "
                       f"{', '.join(RENDER_PRESETS)}")

    loaded, settings = load_for(args)
    from app.core.jobs import run_job
    from app.engine.runtime.directions import is_direction_layer, model_direction_sets, resolve
    from app.engine.runtime.recorder import discover_layers
    from app.session.catalog import CatalogRequest, LayerRequest, build_catalog

    # concept layers (`_blocks.11@nmf32`, any direction set in the cache) are layers too
    sets = model_direction_sets(loaded, settings.cache.dir)
    infos, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device,
                               sets.values())
    shapes = {info.name: info.shape for info in infos}
    requests = []
    for layer in dict.fromkeys(args.layers):
        if layer not in shapes:
            if is_direction_layer(layer):
                resolve(layer, sets)  # one line naming the sets there are
            raise CliError(f"no layer {layer!r} in {loaded.name} (see `deepvis layers`)")
        channels = shapes[layer][0]
        units = (parse_units(args.units, channels) if args.units is not None
                 else list(range(channels)))
        names = sets[layer].names if layer in sets else ()
        requests.append(LayerRequest(layer, tuple(shapes[layer]), tuple(units), names))
    out = args.out.expanduser().resolve()
    bar = TextProgress("catalog")
    try:
        result = run_job(build_catalog(settings, loaded,
                                       CatalogRequest(tuple(requests), out, args.seeds)), bar)
    finally:
        bar.close()
    pages = sum(len(c.units) for c in result.layers)
    layers = f"{len(result.layers)} layer" + ("" if len(result.layers) == 1 else "s")
    print(f"catalog: {pages} unit pages of {layers} in {out} "
          f"({result.rendered} images rendered, {result.from_cache} from the cache); "
          f"open {result.index}", file=sys.stderr)
    if args.json:
        print_json(result.to_json())
    else:
        print(result.index.as_uri())
    return 0
