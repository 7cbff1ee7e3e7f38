"""Our NMF (HALS in torch, `analyses.concepts.nmf`) against scikit-learn's `NMF`, same matrix.

The matrix is what `deepvis concepts` factorizes: the positive part of a layer's activation
vectors, every position of the bundled model's map of 20 scikit-image photos (`_blocks.8`:
20 × 196 positions × 112 channels). Both factorize it at the same K from their own seeded
starts, for the same iteration budgets and to convergence. Reported per run: seconds (the
fastest of `--repeat` alternating rounds, with `--threads` for torch and the BLAS alike; the
error is the same each round) and the relative error ‖A − WH‖/‖A‖, computed the same way
(float64) for both. Issue 23's bar: our error within 10 % of scikit-learn's at the same K.

scikit-learn is not an app dependency (here it comes with umap-learn); run:

    .venv/bin/python benchmarks/bench_nmf_vs_sklearn.py [--layers _blocks.8 _blocks.11]
        [--k 32] [--budgets 25 50 100 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.engine.analyses.concepts.nmf import NMFFit  # noqa: E402
from app.engine.runtime.models import load_bundled  # noqa: E402
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
          "immunohistochemistry", "cat", "camera", "coins", "brick", "grass", "gravel",
          "colorwheel", "moon", "page", "text", "retina", "horse", "clock", "logo")


def photos() -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in PHOTOS:
        img = getattr(data, name)()
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        img = np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]
        out.append(np.ascontiguousarray(img, dtype=np.uint8))
    return out


def samples(layer: str, images: list[np.ndarray]) -> np.ndarray:
    """(positions, C) relu of `layer`'s maps of `images`, as the concepts job samples them."""
    cpu = torch.device("cpu")
    loaded = load_bundled(cpu)
    module = dict(loaded.module.named_modules())[layer]
    maps: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: maps.append(out.detach()))
    try:
        with torch.no_grad():
            for image in images:
                loaded.module(prepare_batch([frame_to_tensor(image, cpu)], loaded.preprocess))
    finally:
        handle.remove()
    rows = [m[0].clamp_min(0).flatten(1).T for m in maps]
    return torch.cat(rows).numpy().astype(np.float32)


def relative_error(a: np.ndarray, w: np.ndarray, h: np.ndarray) -> float:
    a64 = a.astype(np.float64)
    return float(np.linalg.norm(a64 - w.astype(np.float64) @ h.astype(np.float64))
                 / np.linalg.norm(a64))


def ours(a: np.ndarray, k: int, iterations: int | None, seed: int) -> dict[str, float]:
    t0 = time.perf_counter()
    fit = NMFFit.start(torch.from_numpy(a), k, seed=seed)
    if iterations is None:  # to convergence, as `deepvis concepts` runs it
        while not fit.converged and fit.iteration < 2000:
            fit.step(1)
    else:
        fit.step(iterations)
    w, h = fit.result()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "iterations": fit.iteration,
            "relative_error": relative_error(a, w.numpy(), h.numpy())}


def sklearn_nmf(a: np.ndarray, k: int, iterations: int | None, seed: int,
                solver: str) -> dict[str, float]:
    from sklearn.decomposition import NMF

    model = NMF(n_components=k, init="nndsvda", solver=solver, random_state=seed,
                max_iter=iterations or 2000, tol=0.0 if iterations else 1e-4)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "maximum number of iterations reached"
        w = model.fit_transform(a)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "iterations": int(model.n_iter_),
            "relative_error": relative_error(a, w, model.components_)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", nargs="+", default=["_blocks.8", "_blocks.11"])
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--budgets", nargs="+", type=int, default=[25, 50, 100, 200])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest kept")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch's and the BLAS's threads, the same for both (default 1: on a "
                         "shared box, spinning threads of two libraries make noise)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import sklearn
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    images = photos()
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
                   f"({torch.get_num_threads()} threads), scikit-learn {sklearn.__version__}",
        "load_before": os.getloadavg(), "k": args.k, "images": len(images), "layers": []}
    for layer in args.layers:
        a = samples(layer, images)
        rows = []
        for budget in [*args.budgets, None]:
            row: dict[str, object] = {"iterations": budget or "converged"}
            # rounds alternate, so that the box's load hits every variant alike
            runs: dict[str, list[dict[str, float]]] = {"ours": [], "sklearn_cd": [],
                                                       "sklearn_mu": []}
            for _ in range(args.repeat):
                runs["ours"].append(ours(a, args.k, budget, args.seed))
                for solver in ("cd", "mu"):
                    runs[f"sklearn_{solver}"].append(
                        sklearn_nmf(a, args.k, budget, args.seed, solver))
            for name, done in runs.items():
                row[name] = min(done, key=lambda r: r["seconds"])
            rows.append(row)
            if not args.json:
                print(layer, json.dumps(row))
        report["layers"].append({"layer": layer, "shape": list(a.shape), "runs": rows})  # type: ignore[union-attr]
    report["load_after"] = os.getloadavg()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
