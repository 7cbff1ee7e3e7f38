"""The runtime's NNLS codes (`runtime.nnls`): exact to their stated tolerance, by a known
answer, against scipy's active-set solver on a real photo's map, and the cheap fixed-steps
variant really cheaper and less exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from app.engine.runtime.nnls import RTOL, NNLSDictionary, nnls_codes


def unit_rows(rng: np.random.Generator, k: int, c: int, shared: float = 0.0) -> np.ndarray:
    """K nonnegative unit directions; `shared` mixes in a common one (correlated: the Gram
    matrix gets ill-conditioned, as on a deep layer's dictionary)."""
    h = rng.random((k, c)) * (rng.random((k, c)) < 0.5) + shared * rng.random(c)
    return h / np.linalg.norm(h, axis=1, keepdims=True)


def planted(rng: np.random.Generator, h: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows x whose NNLS codes on H are known: c* ≥ 0 with about half its entries zero and
    x = c* H − λ G⁻¹ H with λ > 0 exactly where c* = 0, so that the gradient G c − x Hᵀ is
    λ: zero on the support, positive off it (the KKT conditions; G full rank: unique)."""
    k = h.shape[0]
    g = h @ h.T
    support = rng.random((n, k)) < 0.5
    codes = np.where(support, rng.uniform(0.2, 3.0, (n, k)), 0.0)
    lam = np.where(support, 0.0, rng.uniform(0.05, 1.0, (n, k)))
    x = codes @ h - lam @ np.linalg.solve(g, h)
    return x, codes


@pytest.mark.parametrize("shared", [0.0, 3.0])
def test_codes_are_the_planted_solution(shared):
    """A well-conditioned dictionary (answered by the certificate) and a correlated one
    (κ(G) in the thousands: answered by the exact solve on the support). Both are exact for
    the problem as float32 holds it; rounding x Hᵀ to float32 moves the exact answer by
    up to about κ(G)·ε, which the tolerance allows (module doc)."""
    rng = np.random.default_rng(0)
    h = unit_rows(rng, 24, 64, shared)
    ev = np.linalg.eigvalsh(h @ h.T)
    kappa = ev.max() / ev.min()
    assert (kappa > 1000) == (shared > 0)
    x, expected = planted(rng, h, 300)
    codes = nnls_codes(torch.tensor(x, dtype=torch.float32),
                       torch.tensor(h, dtype=torch.float32)).double().numpy()
    assert (expected == 0).mean() > 0.4  # the constraints are active
    err = np.linalg.norm(codes - expected, axis=1)
    eps = float(np.finfo(np.float32).eps)
    assert (err <= 2 * (RTOL + kappa * eps) * np.linalg.norm(expected, axis=1)).all(), err.max()
    assert (codes[expected == 0] == 0).all()  # exact zeros off the support


def test_dependent_directions_reach_scipys_residual():
    """K > C: G is singular, the codes are not unique and no certificate holds; the exact
    solve on the support still gives the least residual, scipy's."""
    rng = np.random.default_rng(1)
    h = unit_rows(rng, 20, 12)
    x = rng.standard_normal((80, 12)) + 0.5
    assert NNLSDictionary.of(torch.tensor(h, dtype=torch.float32)).convexity == 0
    codes = nnls_codes(torch.tensor(x, dtype=torch.float32),
                       torch.tensor(h, dtype=torch.float32)).double().numpy()
    ours = np.linalg.norm(x - codes @ h, axis=1)
    theirs = np.array([nnls(h.T, row)[1] for row in x])
    assert (codes >= 0).all()
    assert np.allclose(ours, theirs, atol=1e-5 * np.abs(x).max()), np.abs(ours - theirs).max()


@pytest.fixture(scope="module")
def photo_map() -> tuple[np.ndarray, np.ndarray]:
    """The bundled model's `_blocks.8` map of a real photo (positions × 112, its positive
    part) and a 32-direction NMF dictionary learned on it and another photo."""
    from skimage import data

    from app.engine.analyses.concepts.nmf import NMFFit
    from app.engine.runtime.models import load_bundled
    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch

    cpu = torch.device("cpu")
    loaded = load_bundled(cpu)
    module = dict(loaded.module.named_modules())["_blocks.8"]
    maps: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: maps.append(out.detach()))
    try:
        with torch.no_grad():
            for image in (data.coffee(), data.astronaut()):
                loaded.module(prepare_batch([frame_to_tensor(image, cpu)], loaded.preprocess))
    finally:
        handle.remove()
    rows = [m[0].clamp_min(0).flatten(1).T.contiguous() for m in maps]
    fit = NMFFit.start(torch.cat(rows), 32, seed=0)
    fit.step(40)
    return rows[0].numpy(), fit.result()[1].numpy()


def test_codes_of_a_real_map_equal_scipys(photo_map):
    x, h = photo_map
    assert x.shape == (196, 112) and h.shape == (32, 112)
    codes = nnls_codes(torch.tensor(x), torch.tensor(h)).double().numpy()
    expected = np.stack([nnls(h.T.astype(np.float64), row.astype(np.float64))[0] for row in x])
    assert (expected > 0).any() and (expected == 0).any()
    assert np.abs(codes - expected).max() <= 1e-5 * expected.max()
    err = np.linalg.norm(codes - expected, axis=1)
    assert (err <= 1.01 * RTOL * np.linalg.norm(expected, axis=1) + 1e-7).all()


def test_fixed_steps_are_the_cheap_approximation(photo_map):
    """`fixed_steps`: no certificate, no solve — close after enough steps, and really fewer."""
    x, h = (torch.tensor(a) for a in photo_map)
    exact = nnls_codes(x, h)
    scale = float(exact.abs().max())
    few = float((nnls_codes(x, h, fixed_steps=2) - exact).abs().max())
    many = float((nnls_codes(x, h, fixed_steps=60) - exact).abs().max())
    assert few > 1e-4 * scale  # two steps are not the exact answer …
    assert many < 1e-3 * scale and many < few  # … and more steps get close to it
