"""The README's command list names every command the program has."""

from __future__ import annotations

import re
from pathlib import Path

from app.cli import COMMANDS

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_lists_every_command():
    text = README.read_text(encoding="utf-8")
    block = text.split("## Command line", 1)[1].split("```")[1]
    listed = set(re.findall(r"^deepvis (\w+)", block, re.MULTILINE))
    assert set(COMMANDS) - listed == set()


def test_the_readme_says_how_to_install_a_cpu_only_torch():
    text = README.read_text(encoding="utf-8")
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
