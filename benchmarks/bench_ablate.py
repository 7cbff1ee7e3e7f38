"""`deepvis ablate`'s cut (layers below L run once per image) against the naive loop.

Both compute the same curves (checked: identical accuracies at every level) on the same
images of the bundled model: the naive loop runs the whole network for every distinct set
of deleted units, the cut runs the layers below L once per image and only the layers above
L per set. Images are the samples in assets/ and scikit-image's photos, several crops each.

    .venv/bin/python benchmarks/bench_ablate.py [--layers _blocks.4 _blocks.8 _blocks.11]
        [--images 16] [--seeds 3] [--points 11] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.capture.images import read_image  # noqa: E402
from app.core.jobs import run_job  # noqa: E402
from app.core.malloc_tuning import keep_freed_memory  # noqa: E402
from app.engine.analyses.ablation.curves import ablation_curves  # noqa: E402
from app.engine.runtime.device import pick_device  # noqa: E402
from app.engine.runtime.models import load_bundled  # noqa: E402
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch  # noqa: E402


def photos() -> list[np.ndarray]:
    out = [read_image(p) for p in sorted((ROOT / "assets" / "samples").glob("*.jpg"))]
    try:
        from skimage import data

        out += [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    except ImportError:  # scikit-image is a dev extra; the samples suffice
        pass
    return out


def crops(images: list[np.ndarray], n: int) -> list[np.ndarray]:
    """`n` frames: each photo, then shifted and mirrored crops of it."""
    out: list[np.ndarray] = []
    k = 0
    while len(out) < n:
        img = images[k % len(images)]
        h, w = img.shape[:2]
        step = k // len(images)
        dy, dx = (step * h) // 16 % max(h // 4, 1), (step * w) // 12 % max(w // 4, 1)
        crop = img[dy : h - (h // 4 - dy), dx : w - (w // 4 - dx)] if step else img
        out.append(np.ascontiguousarray(crop[:, ::-1] if step % 2 else crop))
        k += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", nargs="+", default=["_blocks.4", "_blocks.8", "_blocks.11"])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--points", type=int, default=11)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    keep_freed_memory()  # as `deepvis` does at start
    if args.threads:
        torch.set_num_threads(args.threads)

    loaded = load_bundled(pick_device(args.device))
    frames = crops(photos(), args.images)
    xs = [prepare_batch([frame_to_tensor(f, loaded.device)], loaded.preprocess) for f in frames]
    batch = torch.cat(xs)  # decoded once: both sides time the network only

    def batches():  # type: ignore[no-untyped-def]
        for i in range(0, len(batch), args.batch_size):
            yield batch[i : i + args.batch_size], None

    report: dict = {"machine": f"{platform.processor() or platform.machine()}, "
                    f"{os.cpu_count()} cores, torch {torch.__version__}, "
                    f"{torch.get_num_threads()} threads", "device": str(loaded.device),
                    "images": len(batch), "seeds": args.seeds, "points": args.points,
                    "results": []}
    for layer in args.layers:
        timing = {}
        results = {}
        for method in ("naive", "cut", "naive", "cut"):  # alternate: noise hits both
            t0 = time.perf_counter()
            res = run_job(ablation_curves(loaded.module, batches, layer, total=len(batch),
                                          seeds=args.seeds, points=args.points, method=method))
            timing.setdefault(method, []).append(time.perf_counter() - t0)
            results[method] = res
        cut, naive = results["cut"], results["naive"]
        same = cut.curves == naive.curves and cut.intact_accuracy == naive.intact_accuracy
        t_cut, t_naive = min(timing["cut"]), min(timing["naive"])
        row = {"layer": layer, "units": cut.units, "levels_per_image": cut.levels,
               "naive_s": round(t_naive, 2), "cut_s": round(t_cut, 2),
               "speedup": round(t_naive / t_cut, 2), "identical_curves": same,
               "cut_note": cut.note}
        report["results"].append(row)
        if not args.json:
            print(f"{layer:10s} {cut.units:4d} units, {cut.levels} levels × {len(batch)} images:"
                  f" naive {t_naive:6.2f} s, cut {t_cut:6.2f} s → {t_naive / t_cut:4.2f}× "
                  f"({'identical' if same else 'DIFFERENT'} curves)", flush=True)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0 if all(r["identical_curves"] for r in report["results"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
