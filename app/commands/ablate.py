"""`deepvis ablate`: placeholder until the analysis lands."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from app.cli import CliError

    raise CliError("ablate is not available yet")
