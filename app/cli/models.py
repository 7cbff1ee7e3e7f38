"""`deepvis models`: the models this machine can load, and which work offline."""

from __future__ import annotations

import argparse

from app.cli.common import add_common, print_json

NAME = "models"
HELP = "list models and whether each is usable offline"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)  # unused here, but global flags are accepted by every command
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from app.engine.runtime.models import model_choices

    choices = model_choices()
    if args.json:
        print_json([{"name": c.name, "offline": c.offline, "description": c.description}
                    for c in choices])
        return 0
    for c in choices:
        print(f"{c.name:22s} {'offline ' if c.offline else 'download'}  {c.description}")
    return 0
