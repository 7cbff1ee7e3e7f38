"""What every command shares: one-line user errors, the global flags, settings, JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from app.core.settings import Settings, SettingsError, load_settings, with_overrides
from app.core.units import UnitSpecError

if TYPE_CHECKING:  # torch-heavy: imported by the commands that load a model, when they run
    from app.engine.runtime.models import LoadedModel

R = TypeVar("R")

EXIT_USAGE = 2
DEFAULT_SETTINGS = Path(__file__).resolve().parents[2] / "settings.toml"
# flags every command takes, also before the subcommand (`deepvis --settings F layers`)
GLOBAL_FLAGS = ("--model", "--device", "--settings")


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2, with no usage dump."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def add_common(p: argparse.ArgumentParser, source: bool = False) -> None:
    """--model, --device, --settings (and --source): shared by every command."""
    p.add_argument("--model",
                   help="bundled name, torchvision name, ARCH:STATE_DICT or a torch.export .pt2")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--settings", type=Path, help="settings.toml to use instead of the default")
    if source:
        p.add_argument("--source", help="auto, camera:N, or a video, image or folder")


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'bad input', imported lazily with their heavy modules."""
    from app.core.atomic import EmptyResult

    errors: list[type[BaseException]] = [CliError, SettingsError, UnitSpecError, EmptyResult]
    from app.capture.images import ImageError
    from app.capture.sources import SourceError

    errors += [ImageError, SourceError]
    if "torch" in sys.modules:
        from app.engine.runtime.cache import CacheError
        from app.engine.runtime.device import DeviceError
        from app.engine.runtime.directions import UnknownDirectionLayer
        from app.engine.runtime.distributed import RankFailed
        from app.engine.runtime.models import ModelError

        errors += [CacheError, DeviceError, ModelError, RankFailed, UnknownDirectionLayer]
    return tuple(errors)


def settings_for(args: argparse.Namespace) -> Settings:
    """settings.toml (or --settings) with --device and --model applied."""
    path = args.settings
    if path is None and DEFAULT_SETTINGS.is_file():
        path = DEFAULT_SETTINGS
    settings = load_settings(path)
    if getattr(args, "device", None):
        settings = with_overrides(settings, "model", device=args.device)
    if getattr(args, "model", None):
        settings = with_overrides(settings, "model", default=args.model)
    if settings.model.threads:  # process-wide: torch has one CPU thread count
        import torch

        torch.set_num_threads(settings.model.threads)
    return settings


def load_for(args: argparse.Namespace) -> tuple[LoadedModel, Settings]:
    """(LoadedModel, Settings) for a command's --model/--device/--settings."""
    from app.engine.runtime.device import pick_device
    from app.engine.runtime.models import load_model

    settings = settings_for(args)
    device = pick_device(settings.model.device)
    return load_model(settings.model.default, device, settings.model), settings


def print_json(doc: Any) -> None:
    """The command's one JSON document on stdout."""
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def print_result(result: R, as_json: bool, table: Callable[[R], Iterable[str]],
                 doc: Callable[[R], Any] | None = None) -> int:
    """A command's closing lines, from its typed result: with --json the one JSON document
    (`doc(result)`, by default `result.to_json()`), else the lines `table(result)` yields.
    Returns the exit status, 0."""
    if as_json:
        print_json(doc(result) if doc is not None else result.to_json())  # type: ignore[attr-defined]
    else:
        for line in table(result):
            print(line)
    return 0


def require_positive(**values: int | None) -> None:
    """CliError naming the first flag (`batch_size` → `--batch-size`) that is not positive."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise CliError(f"--{name.replace('_', '-')} must be positive, got {value}")


def print_skipped(skipped: Sequence[tuple[str, str]]) -> None:
    """The files a command could not read, with why, on stderr (nothing when none)."""
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for path, reason in skipped:
            print(f"  {path}: {reason}", file=sys.stderr)
