"""Command line: `deepvis` opens the live window; subcommands do the rest without a GUI.

One module per command, each with NAME, HELP, `add_arguments(parser)` and `run(args)`,
registered in `COMMANDS` below by plain imports (so the import contracts see them). Heavy
imports (torch, Qt) happen inside `run`, so `deepvis --help` is instant and a bad argument
is reported before anything slow starts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping, Sequence
from types import ModuleType

from app.cli import (
    ablate,
    accentuate,
    atlas,
    audit,
    bench,
    catalog,
    concepts,
    dissect,
    explain,
    invert,
    layers,
    live,
    models,
    predict,
    render,
    scan,
    spectrum,
    tcav,
)
from app.cli.common import EXIT_USAGE, GLOBAL_FLAGS, Parser, user_errors
from app.core.logs import route_to_log
from app.core.malloc_tuning import keep_freed_memory

SUBCOMMANDS: tuple[ModuleType, ...] = (models, layers, predict, bench, scan, render, ablate,
                                       catalog, explain, dissect, accentuate, invert, spectrum,
                                       concepts, tcav, audit, atlas)
COMMANDS: dict[str, ModuleType] = {m.NAME: m for m in SUBCOMMANDS}


def build_parsers() -> tuple[Parser, Parser]:
    """(the live window's parser, the subcommands' parser)."""
    window = Parser(prog="deepvis", description="Live deep visualization of convolutional "
                    "networks. Subcommands: " + ", ".join(COMMANDS)
                    + " (deepvis SUBCOMMAND --help).")
    live.add_arguments(window)
    sub = Parser(prog="deepvis")
    cmds = sub.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in SUBCOMMANDS:
        p = cmds.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
    return window, sub


def _subcommand_first(args: list[str]) -> list[str]:
    """`--settings F layers …` → `layers --settings F …`: global flags may come first."""
    i = 0
    while i < len(args):
        flag = args[i].split("=", 1)[0]
        if args[i] in COMMANDS:
            return [args[i], *args[:i], *args[i + 1:]]
        if flag not in GLOBAL_FLAGS:
            return args
        i += 1 if "=" in args[i] else 2
    return args


def quiet_openmp_waits(environ: MutableMapping[str, str] = os.environ) -> None:
    """Make idle OpenMP threads sleep instead of spin, unless the user chose otherwise.

    torch's OpenMP threads spin on the cores while they wait for work, by default for
    a while after each parallel region. On a busy machine (and a user's laptop always is:
    the window paints on one core) the spinning teams of the worker, the job thread and
    any other process take the cores from the threads that have work: a 3.3 s render took
    154 s beside one other process, 3.4 s with PASSIVE. The OpenMP runtime reads this once,
    when torch loads it, so it must be set before the first `import torch`.
    """
    if "torch" not in sys.modules:
        environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str] | None = None) -> int:
    quiet_openmp_waits()
    args_list = _subcommand_first(list(sys.argv[1:] if argv is None else argv))
    window, sub = build_parsers()
    is_sub = bool(args_list) and args_list[0] in COMMANDS
    args = (sub if is_sub else window).parse_args(args_list)
    command = COMMANDS[args.command] if is_sub else live
    # before torch allocates anything: every forward/backward reuses freed buffers from then on
    keep_freed_memory()
    route_to_log()  # warnings and Qt's chatter go to the log file, not the terminal
    try:
        return int(command.run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `deepvis layers | head`: the reader has what it wanted
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout for the exit flush
        return 0
    except Exception as exc:
        if isinstance(exc, user_errors()):
            print(f"deepvis: error: {exc}".splitlines()[0], file=sys.stderr)
            return EXIT_USAGE
        raise
