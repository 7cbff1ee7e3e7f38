"""How soon does a click on a unit show a picture? Request → first preview → final image.

A click on a unit sends `PreferredImageRequest`; its session job runs on the job thread
(niced, as the window runs it) and sends `PreferredImage` previews, then the final image.
For each unit of each layer (the first unit of a layer pays the private model copy and
oneDNN's primitives for the render's input sizes) this times, from the request:

- `first_preview_s`: the first picture the window gets;
- `full_first_preview_s`: the full render's own first preview (its step `preview_every`) —
  before the first look, the first picture came then;
- `final_s`: the finished image;

with the activations of the first picture and of the final one, for each preset of
`--presets`. Where the preset has a first look (`first_look`), two fresh processes, one
with it and one without it (the job as it was), on the same layers and units, with an
empty render cache each, alternate `--rounds` times; else one process a round.

    .venv/bin/python benchmarks/bench_first_preview.py [--presets fast,maco]
        [--layers _blocks.4,_blocks.11] [--units 0,1,2] [--rounds 1] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import print_report  # noqa: E402  (benchmarks/report.py, beside this script)


def one_process(preset: str, layers: list[str], units: list[int],
                first_look: bool) -> list[dict[str, Any]]:
    """Every (layer, unit) clicked once, in order, in this process."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `deepvis` starts
    import torch

    from app.core.malloc_tuning import keep_freed_memory
    from app.core.messages import PreferredImage
    from app.core.requests import JobEvent, PreferredImageRequest
    from app.core.settings import Settings
    from app.engine.runtime.models import load_model
    from app.session.jobs import JobContext, Jobs, make_job
    from app.session.jobs import units as unit_jobs

    keep_freed_memory()
    if not first_look:
        def no_first_look(*args: object) -> Iterator[Any]:
            return None
            yield

        unit_jobs._first_look = no_first_look  # type: ignore[assignment]
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        s = Settings()
        settings = dataclasses.replace(s, cache=dataclasses.replace(s.cache, dir=cache),
                                       render=dataclasses.replace(s.render, preset=preset))
        loaded = load_model(settings.model.default, torch.device("cpu"), settings.model)
        for layer in layers:
            for unit in units:
                seen: list[tuple[float, PreferredImage]] = []
                finished = threading.Event()

                def emit(message: object, seen: list[tuple[float, PreferredImage]] = seen,
                         finished: threading.Event = finished) -> None:
                    if not isinstance(message, JobEvent):
                        return
                    if isinstance(message.preview, PreferredImage):
                        seen.append((time.perf_counter(), message.preview))
                    if message.finished:
                        finished.set()

                request = PreferredImageRequest(layer, unit)
                jobs = Jobs(emit)
                t0 = time.perf_counter()
                work = make_job(JobContext(settings, loaded, {}), request)
                assert work is not None
                jobs.start(request, work)
                if not finished.wait(600):
                    raise RuntimeError(f"{layer} unit {unit}: no final image in 600 s")
                jobs.stop()
                full = [(t, e) for t, e in seen if e.step > 0 and not e.done]
                final = [(t, e) for t, e in seen if e.done]
                rows.append({
                    "layer": layer, "unit": unit,
                    "first_preview_s": round(seen[0][0] - t0, 3),
                    "full_first_preview_s": round(full[0][0] - t0, 3) if full else None,
                    "final_s": round(final[-1][0] - t0, 3),
                    "first_activation": round(seen[0][1].activation, 2),
                    "final_activation": round(final[-1][1].activation, 2),
                })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="fast,maco")
    ap.add_argument("--layers", default="_blocks.4,_blocks.11")
    ap.add_argument("--units", default="0,1,2")
    ap.add_argument("--rounds", type=int, default=1, help="with/without pairs of processes")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--variant", choices=("with", "without"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    layers = args.layers.split(",")
    units = [int(u) for u in args.units.split(",")]
    if args.variant:
        json.dump(one_process(args.presets, layers, units, args.variant == "with"), sys.stdout)
        return
    from app.engine.analyses.featurevis.presets import first_look, get_preset

    report: dict[str, Any] = {"loadavg_before": [round(v, 2) for v in os.getloadavg()]}
    for preset in args.presets.split(","):
        has_look = first_look(get_preset(preset)) is not None
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            for variant in ("with", "without") if has_look else ("with",):
                out = subprocess.run(
                    [sys.executable, __file__, "--variant", variant, "--presets", preset,
                     "--layers", args.layers, "--units", args.units], capture_output=True,
                    text=True, check=True, cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
                runs.setdefault(variant, []).extend(json.loads(out))
        for variant, rows in runs.items():
            name = f"{preset}, {'with' if variant == 'with' else 'without'} first look"
            if not has_look:
                name = f"{preset} (its own first preview by step 8: no first look)"
            report[name] = rows
            for key in ("first_preview_s", "final_s"):
                new_layer = [r[key] for r in rows if r["unit"] == units[0]]
                report[f"{name}: median {key}, first unit of a layer"] = round(
                    statistics.median(new_layer), 3)
                report[f"{name}: median {key}, all"] = round(
                    statistics.median(r[key] for r in rows), 3)
    report["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    print_report(report, args.json)


if __name__ == "__main__":
    main()
