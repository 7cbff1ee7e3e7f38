"""Our TCAV (`analyses.tcav`) against captum's (`captum.concept.TCAV`), same folders, same work.

Both answer one question from image files on disk: does class `--class` depend on the
concept at `--layer`, over `--runs` runs, each a concept-vs-random CAV and a
random-vs-random CAV (the null), scored on the same example images. So each side fits
2 × runs CAVs and scores the examples along each. Ours: `run_tcav` end to end (decoding,
activations, CAVs on the device, scores, the t-test) into an empty cache. Captum's: the
same images decoded the same way (`prepare_batch`), its default classifier (scikit-learn's
SGD on the flattened C·H·W activations), its experimental sets built as ours are (run i:
the concept against random subset i, and random subset i against another one). Rounds
alternate; the fastest of each side is reported, with the scores.

Scores agree only for the same CAV, and the two fit different CAVs (a spatial mean of the
map in ours, a flattened map in captum's); `tests/test_tcav.py` and the earlier run in
`docs/benchmarks.md` check that, given our CAV, captum's `sign_count` equals our score.

captum is never an app dependency: install it into a throwaway folder and name it:

    pip install --target /tmp/peers captum scikit-learn
    .venv/bin/python benchmarks/bench_tcav_vs_captum.py --peers /tmp/peers \\
        [--layer _blocks.8] [--class 281] [--runs 2] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.capture.images import downscale_to, read_image  # noqa: E402
from app.core.files import list_images  # noqa: E402
from app.core.jobs import run_job  # noqa: E402
from app.engine.analyses.tcav import run_tcav  # noqa: E402
from app.engine.runtime.models import LoadedModel, load_bundled  # noqa: E402
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch  # noqa: E402

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "coins",
          "immunohistochemistry", "hubble_deep_field", "retina", "brick", "grass", "gravel")


def make_folders(root: Path, per: int = 8) -> Path:
    """concept (crops of the cat), random (crops of the other photos), examples (the cat)."""
    import cv2
    from skimage import data as skdata

    rng = np.random.default_rng(0)

    def crops(img: np.ndarray, n: int, side: int) -> list[np.ndarray]:
        img = np.dstack([img] * 3) if img.ndim == 2 else img[..., :3]
        h, w = img.shape[:2]
        side = min(side, h - 1, w - 1)
        out = []
        for _ in range(n):
            y, x = rng.integers(0, h - side), rng.integers(0, w - side)
            out.append(np.ascontiguousarray(img[y:y + side, x:x + side]).astype(np.uint8))
        return out

    sets = {"concept": crops(skdata.chelsea(), per, 160),
            "random": [c for n in PHOTOS[1:] for c in crops(getattr(skdata, n)(), 2, 160)],
            "examples": crops(skdata.chelsea(), per, 240)}
    for name, images in sets.items():
        (root / name).mkdir(parents=True)
        for i, img in enumerate(images):
            cv2.imwrite(str(root / name / f"{i:02d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return root


def ours(loaded: LoadedModel, root: Path, layer: str, target: int, runs: int
         ) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    r = run_job(run_tcav(loaded, root / "concept", [root / "random"], root / "examples",
                         target, [layer], runs=runs, cache_dir=tempfile.mkdtemp(),
                         units=False))
    s = r.layers[0]
    return time.perf_counter() - t, {"scores": list(s.scores),
                                      "random_scores": list(s.random_scores),
                                      "p_value": s.p_value}


def captums(loaded: LoadedModel, root: Path, layer: str, target: int, runs: int
            ) -> tuple[float, dict[str, Any]]:
    from captum.concept import TCAV, Concept
    from torch.utils.data import DataLoader

    t = time.perf_counter()

    def decoded(folder: Path) -> torch.Tensor:
        return prepare_batch([frame_to_tensor(downscale_to(read_image(p), 1280), loaded.device)
                              for p in list_images(folder)], loaded.preprocess)

    x_c, x_r, x_ex = (decoded(root / n) for n in ("concept", "random", "examples"))
    half = len(x_r) // 2
    rng = np.random.default_rng(0)
    concept = Concept(0, "concept", DataLoader(list(x_c), batch_size=8))
    sets = []
    for i in range(runs):  # as ours: run i's random subset, and a disjoint second one
        order = rng.permutation(len(x_r))
        first = Concept(1 + 2 * i, f"random{i}",
                        DataLoader(list(x_r[order[:half]]), batch_size=8))
        second = Concept(2 + 2 * i, f"other{i}",
                         DataLoader(list(x_r[order[half:2 * half]]), batch_size=8))
        sets += [[concept, first], [first, second]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = TCAV(loaded.module, [layer], save_path=tempfile.mkdtemp()).interpret(
            x_ex, sets, target=target)
    seconds = time.perf_counter() - t
    keys = list(got)
    scores = [float(got[k][layer]["sign_count"][0]) for k in keys]
    return seconds, {"scores": scores[0::2], "random_scores": scores[1::2]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", required=True, help="the throwaway folder captum is in")
    ap.add_argument("--layer", default="_blocks.8")
    ap.add_argument("--class", dest="target", type=int, default=281)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.append(args.peers)
    torch.set_num_threads(args.threads)
    loaded = load_bundled(torch.device("cpu"))
    root = make_folders(Path(tempfile.mkdtemp()) / "tcav")
    times: dict[str, list[float]] = {"ours": [], "captum": []}
    answers: dict[str, dict[str, Any]] = {}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for name, fn in (("ours", ours), ("captum", captums)):
            seconds, answer = fn(loaded, root, args.layer, args.target, args.runs)
            times[name].append(seconds)
            answers[name] = answer
    report = {
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "threads": args.threads, "layer": args.layer, "class": args.target,
        "runs": args.runs, "cavs_each": 2 * args.runs,
        "images": {n: len(list_images(root / n)) for n in ("concept", "random", "examples")},
        "seconds": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
        "fastest_s": {k: round(min(vs), 2) for k, vs in times.items()},
        "captum_over_ours": round(min(times["captum"]) / min(times["ours"]), 2),
        "answers": answers,
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for k, v in report.items():
            print(f"{k:18s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
