"""The house rules that a reader of the layout relies on: no import cycle, no huge file.

The import-linter contracts (pyproject.toml, run by `make test`) say which package may
import which; these say what they cannot express.
"""

from __future__ import annotations

from pathlib import Path

import grimp

APP = Path(__file__).resolve().parents[1] / "app"
MAX_LINES = 600


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_app():
    graph = grimp.build_graph("app")  # every import, those inside functions too
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i.startswith("app")}
             for m in graph.modules}
    assert len(edges) > 50 and edges["app.__main__"] == {"app.cli"}
    assert _cycles(edges) == []


def test_no_file_in_app_over_600_lines():
    long = {str(p.relative_to(APP)): n for p in APP.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


HUB_MAX_LINES = 400  # issue 21: the hubs every job used to edit stay small


def test_the_hubs_and_the_session_stay_under_400_lines():
    hubs = [APP / "gui" / "main_window.py", APP / "gui" / "result_presenter.py",
            APP / "core" / "messages.py", *sorted((APP / "session").rglob("*.py"))]
    long = {str(p.relative_to(APP)): n for p in hubs
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > HUB_MAX_LINES}
    assert long == {}
