"""How the benchmarks print what they measured: JSON for files and tools, else one line a key."""

from __future__ import annotations

import json
import sys
from typing import Any


def print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return
    width = max(map(len, report), default=0) + 2
    for key, value in report.items():
        print(f"{key:{width}s}{value}")
