"""Command line: `deepvis` opens the live window; subcommands do the rest without a GUI.

Heavy imports (torch, Qt) happen inside the commands, so `deepvis --help` is instant
and a bad argument is reported before anything slow starts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from app.core.malloc_tuning import keep_freed_memory
from app.core.settings import Settings, SettingsError, load_settings, with_overrides
from app.core.units import UnitSpecError

EXIT_USAGE = 2
DEFAULT_SETTINGS = Path(__file__).resolve().parent.parent / "settings.toml"


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'bad input', imported lazily with their heavy modules."""
    errors: list[type[BaseException]] = [CliError, SettingsError, UnitSpecError]
    try:
        from app.capture.images import ImageError
        from app.capture.sources import SourceError
        errors += [ImageError, SourceError]
    except ImportError:  # pragma: no cover - capture always importable in practice
        pass
    if "torch" in sys.modules:
        from app.engine.device import DeviceError
        from app.engine.models import ModelError
        errors += [DeviceError, ModelError]
    return tuple(errors)


def _settings(args: argparse.Namespace) -> Settings:
    path = args.settings
    if path is None and DEFAULT_SETTINGS.is_file():
        path = DEFAULT_SETTINGS
    settings = load_settings(path)
    if getattr(args, "device", None):
        settings = with_overrides(settings, "model", device=args.device)
    if getattr(args, "model", None):
        settings = with_overrides(settings, "model", default=args.model)
    return settings


def add_common(p: argparse.ArgumentParser, source: bool = False) -> None:
    """--model, --device, --settings (and --source): shared by every command."""
    _add_common(p, source)


def load_for(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """(LoadedModel, Settings) for a command's --model/--device/--settings."""
    return _load(args)


def settings_for(args: argparse.Namespace) -> Settings:
    return _settings(args)


def print_json(doc: Any) -> None:
    _print_json(doc)


def _add_common(p: argparse.ArgumentParser, source: bool = False) -> None:
    p.add_argument("--model", help="bundled name, torchvision name, ARCH:STATE_DICT or TorchScript")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--settings", type=Path, help="settings.toml to use instead of the default")
    if source:
        p.add_argument("--source", help="auto, camera:N, or a video, image or folder")


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


# -- commands -----------------------------------------------------------------------------


def cmd_live(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.screenshot and args.frames <= 0:
        raise CliError("--frames must be positive with --screenshot")
    src = args.source
    if src and src != "auto" and not src.startswith("camera:") and not src.isdigit() \
            and not Path(src).expanduser().exists():
        raise CliError(f"source not found: {src}")
    if args.unit is not None and args.unit < 0:
        raise CliError("--unit must not be negative")
    from app.__main__ import launch_window

    return launch_window(
        settings,
        source=args.source or settings.source.default,
        layer=args.layer or settings.view.layer or None,
        unit=args.unit,
        screenshot=args.screenshot,
        frames=args.frames,
    )


def cmd_models(args: argparse.Namespace) -> int:
    from app.engine.models import model_choices

    choices = model_choices()
    if args.json:
        _print_json([{"name": c.name, "offline": c.offline, "description": c.description}
                     for c in choices])
        return 0
    for c in choices:
        print(f"{c.name:22s} {'offline ' if c.offline else 'download'}  {c.description}")
    return 0


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from app.engine.device import pick_device
    from app.engine.models import load_model

    settings = _settings(args)
    device = pick_device(settings.model.device)
    return load_model(settings.model.default, device, settings.model), settings


def cmd_layers(args: argparse.Namespace) -> int:
    from app.engine.recorder import default_layer, discover_layers

    loaded, _ = _load(args)
    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    if args.json:
        _print_json({"model": loaded.name, "default_layer": default_layer(layers),
                     "layers": [{"name": i.name, "shape": list(i.shape), "kind": i.kind}
                                for i in layers]})
        return 0
    width = max(len(i.name) for i in layers)
    for info in layers:
        shape = "×".join(str(s) for s in info.shape)
        print(f"{info.name:{width}s}  {shape:>14s}  {info.kind}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from app.capture.images import read_image

    for path in args.images:
        if not Path(path).is_file():
            raise CliError(f"image not found: {path}")
    if args.top_k < 1:
        raise CliError("--top-k must be positive")
    loaded, settings = _load(args)
    from app.engine.predict import predict_images

    images = [read_image(p, settings.source.max_image_pixels) for p in args.images]
    if args.ablate:
        from app.commands.ablate import predict_ablated_command

        return predict_ablated_command(args, loaded, images)
    results = predict_images(loaded, images, top_k=args.top_k)
    if args.json:
        _print_json({
            "model": loaded.name, "device": str(loaded.device),
            "results": [{"image": str(p), "top": [
                {"index": pr.index, "label": pr.label, "probability": round(pr.probability, 6)}
                for pr in preds]} for p, preds in zip(args.images, results, strict=True)],
        })
        return 0
    for path, preds in zip(args.images, results, strict=True):
        print(path)
        for pr in preds:
            print(f"  {pr.probability * 100:6.2f}%  {pr.label} ({pr.index})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from app.bench import run_bench

    settings = _settings(args)
    if args.rounds < 1 or (args.frames is not None and args.frames < 1):
        raise CliError("--frames and --rounds must be positive")
    report = run_bench(settings, source=args.source, frames=args.frames or settings.bench.frames,
                       size=args.size or settings.bench.size, rounds=args.rounds,
                       with_gui=not args.no_gui)
    if args.json:
        _print_json(report)
    else:
        for key, value in report.items():
            print(f"{key:24s} {value}")
    return 0


# Analyses live in app/commands/<name>.py, each with add_arguments(parser) and run(args);
# run() does the heavy imports, so building the parser stays cheap.
ANALYSES = {
    "scan": "top-activating dataset patches for every unit of some layers",
    "render": "preferred images of units by regularized gradient ascent",
    "ablate": "accuracy vs. units deleted, and class selectivity, on a labeled folder",
}


def _analysis(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        module = importlib.import_module(f"app.commands.{name}")
        return int(module.run(args))

    return run


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "models": cmd_models, "layers": cmd_layers, "predict": cmd_predict, "bench": cmd_bench,
    **{name: _analysis(name) for name in ANALYSES},
}


def build_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    live = _Parser(prog="deepvis", description="Live deep visualization of convolutional networks."
                   " Subcommands: " + ", ".join(COMMANDS) + " (deepvis SUBCOMMAND --help).")
    _add_common(live, source=True)
    live.add_argument("--layer", help="layer to show first (dotted module name)")
    live.add_argument("--unit", type=int, help="unit to select first")
    live.add_argument("--screenshot", type=Path, help="run for --frames results, save a PNG, exit")
    live.add_argument("--frames", type=int, default=30, help="results to show before --screenshot")

    sub = _Parser(prog="deepvis")
    cmds = sub.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = cmds.add_parser("models", help="list models and whether each is usable offline")
    p.add_argument("--json", action="store_true")
    p = cmds.add_parser("layers", help="recordable layers with output shapes")
    _add_common(p)
    p.add_argument("--json", action="store_true")
    p = cmds.add_parser("predict", help="top classes for images")
    _add_common(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--ablate", action="append", metavar="LAYER:UNITS",
                   help="delete units of a layer, e.g. _blocks.8:0-15 (repeatable); shows the "
                   "intact and the ablated top-k side by side")
    p.add_argument("--ablate-mode", choices=("zero", "mean"), default="zero",
                   help="replace deleted units by 0 or by their mean over the given images")
    p.add_argument("--json", action="store_true")
    p = cmds.add_parser("bench", help="live pipeline against bare model(x), side by side")
    _add_common(p, source=True)
    p.add_argument("--frames", type=int, help="frames per measurement round")
    p.add_argument("--size", type=int, help="input size (default: the model's)")
    p.add_argument("--rounds", type=int, default=7, help="alternating bare/pipeline rounds")
    p.add_argument("--no-gui", action="store_true", help="skip the GUI update measurement")
    p.add_argument("--json", action="store_true")
    for name, text in ANALYSES.items():
        p = cmds.add_parser(name, help=text, description=text)
        module = importlib.import_module(f"app.commands.{name}")
        module.add_arguments(p)
    return live, sub


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    live, sub = build_parsers()
    is_sub = bool(args_list) and args_list[0] in COMMANDS
    args = (sub if is_sub else live).parse_args(args_list)
    handler = COMMANDS[args.command] if is_sub else cmd_live
    # before torch allocates anything: every forward/backward reuses freed buffers from then on
    keep_freed_memory()
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if isinstance(exc, _user_errors()):
            print(f"deepvis: error: {exc}".splitlines()[0], file=sys.stderr)
            return EXIT_USAGE
        raise
