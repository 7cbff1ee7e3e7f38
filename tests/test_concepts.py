"""Concept dictionaries: planted directions recovered, codes against an independent NNLS,
deletion identities, resume after a cancel, and `deepvis concepts` on real photos."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment, nnls
from torch import nn

from app.core.jobs import Cancelled, run_job
from app.engine.analyses.concepts import (
    ConceptDictionary,
    ConceptLayer,
    ConceptProgress,
    ConceptsError,
    NMFFit,
    SAEFit,
    learn_concepts,
    load_dictionary,
    rename_concept,
)
from app.engine.analyses.concepts.samples import SampleReservoir
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import Preprocess


@pytest.fixture(autouse=True)
def one_thread():
    """These fits are thousands of tiny matrix products: on a shared CPU, torch's thread pool
    spends more time handing them between threads than computing them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def planted_nonnegative(rng: np.random.Generator, n: int, k: int, c: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(A, H): n samples, sparse nonnegative mixtures of k sparse nonnegative unit rows of H."""
    h = rng.random((k, c)) * (rng.random((k, c)) < 0.4)
    h /= np.linalg.norm(h, axis=1, keepdims=True)
    w = rng.exponential(1.0, (n, k)) * (rng.random((n, k)) < 0.3)
    return w @ h + 0.01 * rng.random((n, c)), h


def matched_cosines(found: np.ndarray, planted: np.ndarray) -> np.ndarray:
    """Cosine of each planted direction with its partner in a one-to-one best matching."""
    f = found / np.linalg.norm(found, axis=1, keepdims=True)
    cos = planted @ f.T
    rows, cols = linear_sum_assignment(-cos)
    return cos[rows, cols]


def test_nmf_recovers_planted_directions():
    rng = np.random.default_rng(0)
    a, planted = planted_nonnegative(rng, 3000, 6, 24)
    fit = NMFFit.start(torch.tensor(a, dtype=torch.float32), 6, seed=0)
    while fit.iteration < 400 and not fit.converged:
        fit.step(5)
    w, h = fit.result()
    cos = matched_cosines(h.numpy(), planted)
    assert cos.min() >= 0.95, cos
    assert np.allclose(np.linalg.norm(h.numpy(), axis=1), 1, atol=1e-5)
    recon = np.linalg.norm(a - w.numpy() @ h.numpy()) / np.linalg.norm(a)
    assert recon == pytest.approx(fit.error, abs=1e-3) and recon < 0.05
    # concept order: by how much of A each explains
    assert np.all(np.diff(w.numpy().sum(0)) <= 1e-3)


def test_sae_recovers_planted_directions_and_its_codes_are_topk():
    """16 signed unit directions, 3 active per sample: an SAE twice as wide finds all 16."""
    rng = np.random.default_rng(0)
    c, k, n = 32, 16, 16384
    planted = rng.standard_normal((k, c))
    planted /= np.linalg.norm(planted, axis=1, keepdims=True)
    z = np.zeros((n, k))
    for i in range(n):
        z[i, rng.choice(k, 3, replace=False)] = rng.uniform(0.5, 1.5, 3)
    a = torch.tensor(z @ planted + 0.01 * rng.standard_normal((n, c)), dtype=torch.float32)
    fit = SAEFit(a, 32, 3, seed=0, total_steps=3000)
    fit.step(3000)
    w = fit.weights()
    w_dec = w["w_dec"].numpy()
    best = (planted @ w_dec.T).max(1)  # overcomplete: each planted direction's best latent
    assert best.min() >= 0.95, best
    assert np.allclose(np.linalg.norm(w_dec, axis=1), 1, atol=1e-5)
    # the stored encoder, evaluated by hand: ReLU of the 3 largest pre-activations
    x = a[:50].numpy()
    pre = (x - w["b_dec"].numpy()) @ w["w_enc"].numpy().T + w["b_enc"].numpy()
    expected = np.zeros_like(pre)
    top = np.argsort(-pre, axis=1)[:, :3]
    np.put_along_axis(expected, top, np.maximum(np.take_along_axis(pre, top, 1), 0), 1)
    layer = ConceptLayer(sae_dictionary(w, 3, Path("unused")), torch.device("cpu"))
    codes = layer.codes(torch.tensor(x.T.reshape(c, 5, 10)))
    assert np.allclose(codes.numpy().reshape(32, 50).T, expected, atol=1e-5)


def sae_dictionary(w: dict[str, torch.Tensor], active: int, folder: Path) -> ConceptDictionary:
    return ConceptDictionary(
        "layer", "sae", w["w_dec"].numpy(), tuple(f"c{i}" for i in range(len(w["w_dec"]))),
        folder, 1, 1, 0.0, True, {n: w[n].numpy() for n in ("w_enc", "b_enc", "b_dec")},
        active)


def nmf_dictionary(h: np.ndarray, folder: Path = Path("unused")) -> ConceptDictionary:
    return ConceptDictionary("layer", "nmf", h.astype(np.float32),
                             tuple(f"c{i}" for i in range(len(h))), folder, 1, 1, 0.0, True)


def random_dictionary(rng: np.random.Generator, k: int, c: int) -> np.ndarray:
    h = rng.random((k, c)) * (rng.random((k, c)) < 0.5) + 0.01
    return h / np.linalg.norm(h, axis=1, keepdims=True)


def scipy_codes(h: np.ndarray, acts: np.ndarray) -> np.ndarray:
    """(K, H, W) NNLS codes of relu(acts) (C, H, W) by scipy's active-set solver."""
    c, hh, ww = acts.shape
    x = np.maximum(acts, 0).reshape(c, -1).T.astype(np.float64)
    codes = np.stack([nnls(h.T.astype(np.float64), row)[0] for row in x])
    return codes.T.reshape(-1, hh, ww)


@pytest.mark.parametrize("system_budget", [1 << 24, 700])
def test_concept_codes_equal_an_independent_nnls(monkeypatch, system_budget):
    """…in one batch of positions, or (a tiny budget) in blocks of a few positions."""
    import app.engine.runtime.nnls as nmf

    monkeypatch.setattr(nmf, "SYSTEM_BUDGET", system_budget)
    rng = np.random.default_rng(1)
    for k, c in ((8, 20), (24, 40), (12, 12)):
        h = random_dictionary(rng, k, c)
        # a signed map: NMF codes are those of its positive part
        acts = rng.standard_normal((c, 9, 11)).astype(np.float32) + 0.3
        layer = ConceptLayer(nmf_dictionary(h), torch.device("cpu"))
        codes = layer.codes(torch.tensor(acts)).numpy()
        expected = scipy_codes(h, acts)
        assert codes.shape == (k, 9, 11)
        assert np.abs(codes - expected).max() <= 1e-4 * max(1.0, expected.max()), (k, c)
        assert (codes >= 0).all() and (expected > 0).any()


def test_deleting_a_concept_removes_exactly_its_component():
    rng = np.random.default_rng(2)
    h = random_dictionary(rng, 10, 16)
    acts = rng.standard_normal((2, 16, 6, 7)).astype(np.float32) + 0.5
    layer = ConceptLayer(nmf_dictionary(h), torch.device("cpu"))
    t = torch.tensor(acts)
    for concepts in ([3], [0, 7, 9]):
        deleted = layer.delete(t, concepts).numpy()
        expected = sum(np.einsum("hw,c->chw", scipy_codes(h, acts[0])[j], h[j])
                       for j in concepts)
        assert np.allclose(acts[0] - deleted[0], expected, atol=1e-4)
        assert np.abs(expected).max() > 0.1  # the concepts were present to be deleted
    assert np.array_equal(layer.delete(t, []).numpy(), acts)
    with pytest.raises(ValueError, match="no concept 10"):
        layer.delete(t, [10])


def test_codes_and_residual_add_up_and_deleting_everything_leaves_the_negative_part():
    rng = np.random.default_rng(3)
    h = random_dictionary(rng, 6, 12)
    acts = torch.tensor(rng.standard_normal((12, 5, 5)).astype(np.float32))
    layer = ConceptLayer(nmf_dictionary(h), torch.device("cpu"))
    d = layer.decompose(acts)
    total = torch.einsum("khw,kc->chw", d.codes, torch.tensor(h, dtype=torch.float32))
    assert torch.allclose(total + d.residual + d.rest, acts, atol=1e-6)
    assert torch.allclose(total + d.residual, acts.clamp_min(0), atol=1e-6)
    everything = layer.delete(acts, range(6), residual=True)
    assert torch.allclose(everything, torch.minimum(acts, torch.zeros(())), atol=1e-6)
    assert (everything <= 0).all() and (acts > 0).any()


# -- the job, on a small random CNN ---------------------------------------------------------------


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.conv1 = nn.Conv2d(3, 12, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(12, 16, 3, padding=1)
        self.fc = nn.Linear(16, 3)
        with torch.no_grad():
            for m in (self.conv1, self.conv2, self.fc):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.3)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        return self.fc(y.mean((2, 3)))


def small_loaded() -> LoadedModel:
    pre = Preprocess(size=32, crop_fraction=1.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return LoadedModel("smallnet", SmallNet().eval(), pre, ("a", "b", "c"), torch.device("cpu"))


def make_images(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        low = rng.integers(0, 256, (4, 5, 3)).astype(np.uint8)
        img = cv2.resize(low, (40, 36), interpolation=cv2.INTER_CUBIC)
        assert cv2.imwrite(str(folder / f"img{i:02d}.png"), img)


def test_reservoir_is_a_fixed_budget_whatever_the_batching():
    loaded = small_loaded()
    with torch.no_grad():
        acts = loaded.module.conv1(torch.randn(7, 3, 32, 32))  # (7, 12, 16, 16)
    whole = SampleReservoir(300, 12, seed=5, device=torch.device("cpu"))
    whole.offer(acts, list(range(7)))
    parts = SampleReservoir(300, 12, seed=5, device=torch.device("cpu"))
    for ids in ([4, 5, 6], [0], [1, 2, 3]):  # another grouping, another order
        parts.offer(acts[ids], ids)
    assert whole.matrix().shape == (300, 12)
    assert torch.equal(whole.matrix(), parts.matrix())
    # every kept row is one of the positions offered
    flat = acts.permute(0, 2, 3, 1).reshape(-1, 12)
    rows = whole.matrix()
    assert all(bool((flat == r).all(1).any()) for r in rows[:20])
    # two reservoirs over disjoint images (as two ranks would have) merge into the whole
    first = SampleReservoir(300, 12, seed=5, device=torch.device("cpu"))
    first.offer(acts[[0, 2, 4, 6]], [0, 2, 4, 6])
    second = SampleReservoir(300, 12, seed=5, device=torch.device("cpu"))
    second.offer(acts[[1, 3, 5]], [1, 3, 5])
    first.absorb(second.state())
    assert torch.equal(first.matrix(), whole.matrix())
    other = SampleReservoir(300, 12, seed=6, device=torch.device("cpu"))
    other.offer(acts, list(range(7)))
    assert not torch.equal(other.matrix(), whole.matrix())


def learn(out: Path, method: str, cancel_after: int | None = None, **kw: object
          ) -> tuple[ConceptDictionary, list[str]]:
    """The job driven to its result and the stages of its progress; with `cancel_after`,
    cancelled after that many steps."""
    cancel = threading.Event()
    stages: list[str] = []

    def progress(p: ConceptProgress) -> None:
        stages.append(p.stage)
        if cancel_after is not None and len(stages) >= cancel_after:
            cancel.set()

    job = learn_concepts(small_loaded(), out.parent / "images", "conv2", 5, method,
                         samples=400, batch_size=3, out=out, **kw)
    return run_job(job, progress, cancel), stages


@pytest.mark.parametrize("method, steps", [("nmf", 60), ("sae", 600)])
def test_a_cancelled_run_resumes_to_the_dictionary_of_an_uninterrupted_one(tmp_path, method,
                                                                           steps):
    make_images(tmp_path / "images", 10)
    whole, _ = learn(tmp_path / "whole", method, iterations=steps, tol=0.0)
    assert whole.directions.shape == (5, 16) and whole.images == 10 and whole.samples == 400
    out = tmp_path / "resumed"
    # cancel while collecting (4 batches), then while fitting (5 and 50 steps a yield)
    for after in (2, 6, 9):
        with pytest.raises(Cancelled):
            learn(out, method, cancel_after=after, iterations=steps, tol=0.0)
        assert load_dictionary(next(out.glob(f"{method}5-*"), out)) is None
    resumed, stages = learn(out, method, iterations=steps, tol=0.0)
    assert stages and set(stages) == {method}  # the samples were all collected before
    assert np.array_equal(resumed.directions, whole.directions)
    assert resumed.relative_error == whole.relative_error
    again, _ = learn(out, method, iterations=steps, tol=0.0)
    assert again.cached and np.array_equal(again.directions, whole.directions)


def test_names_are_stored_beside_the_dictionary(tmp_path):
    make_images(tmp_path / "images", 4)
    d, _ = learn(tmp_path / "out", "nmf", iterations=20)
    assert d.names == tuple(f"concept {i}" for i in range(5))
    renamed = rename_concept(d, 2, "  striped   fur ")
    assert renamed.names[2] == "striped fur"
    loaded = load_dictionary(d.folder)
    assert loaded is not None and loaded.names[2] == "striped fur"
    assert loaded.names[:2] == ("concept 0", "concept 1")
    relearned, _ = learn(tmp_path / "out", "nmf", iterations=20, resume=False)
    assert not relearned.cached and relearned.names[2] == "striped fur"
    assert rename_concept(loaded, 2, "").names[2] == "concept 2"
    with pytest.raises(ValueError, match="no concept 5"):
        rename_concept(d, 5, "x")
    # nothing in the folder needs pickle
    for npy in d.folder.glob("*.np[yz]"):
        np.load(npy, allow_pickle=False)


def test_bad_requests_raise_one_line_errors(tmp_path):
    make_images(tmp_path / "images", 2)
    (tmp_path / "empty").mkdir()
    loaded = small_loaded()
    for dataset, layer, k, method, fragment in (
        (tmp_path / "missing", "conv2", 4, "nmf", "dataset not found"),
        (tmp_path / "empty", "conv2", 4, "nmf", "no images"),
        (tmp_path / "images", "conv9", 4, "nmf", "no layer named 'conv9'"),
        (tmp_path / "images", "conv2", 0, "nmf", "must be positive"),
        (tmp_path / "images", "conv2", 4, "pca", "unknown method"),
        (tmp_path / "images", "conv2", 9999, "nmf", "too few"),
    ):
        with pytest.raises(ConceptsError, match=fragment) as err:
            run_job(learn_concepts(loaded, dataset, layer, k, method, out=tmp_path / "o"))
        assert "\n" not in str(err.value)


# -- the command, on the bundled model and real photos -----------------------------------------


def test_cli_on_real_photos_with_the_bundled_model(tmp_path, capsys):
    from skimage import data as skdata

    import app.cli as cli

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee", "astronaut", "rocket", "camera"):
        img = getattr(skdata, name)()
        rgb = np.dstack([img] * 3) if img.ndim == 2 else img
        assert cv2.imwrite(str(photos / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    argv = ["concepts", str(photos), "--layer", "_blocks.8", "--k", "12", "--samples", "600",
            "--iterations", "60", "--device", "cpu", "--out", str(tmp_path / "out"), "--json"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"concept_layer", "source_layer", "k", "method", "images", "samples",
            "relative_error", "dictionary"} <= doc.keys()
    assert doc["concept_layer"] == "_blocks.8@nmf12" and doc["source_layer"] == "_blocks.8"
    assert doc["k"] == 12 and doc["method"] == "nmf" and doc["images"] == 5
    assert doc["samples"] == 600  # 5 × 14 × 14 positions, a budget of 600
    assert 0 < doc["relative_error"] < 1
    directions = np.load(doc["dictionary"], allow_pickle=False)
    assert directions.shape == (12, 112) and directions.dtype == np.float32
    assert np.allclose(np.linalg.norm(directions, axis=1), 1, atol=1e-4)
    assert (directions >= 0).all()  # NMF of the positive part
    # the error against two independent references on the same samples (stored beside the
    # dictionary, see `concepts.store`): no rank-12 matrix does better than the truncated
    # SVD, and scipy's NNLS codes are the best any codes can do with these directions
    (stored,) = (tmp_path / "out").glob("samples-*/samples.npz")
    a = np.maximum(np.load(stored, allow_pickle=False)["rows"], 0).astype(np.float64)
    assert a.shape == (600, 112)
    sv = np.linalg.svd(a, compute_uv=False)
    svd_bound = np.sqrt((sv[12:] ** 2).sum() / (sv ** 2).sum())
    codes = np.stack([nnls(directions.T.astype(np.float64), row)[0] for row in a])
    best_codes = np.linalg.norm(a - codes @ directions) / np.linalg.norm(a)
    assert svd_bound <= best_codes <= doc["relative_error"] + 1e-4
    assert doc["relative_error"] <= 1.3 * svd_bound, (doc["relative_error"], svd_bound)
    assert cli.main(argv) == 0 and json.loads(capsys.readouterr().out)["cached"] is True

    assert cli.main(argv[:-1]) == 0  # the summary for people
    text = capsys.readouterr().out
    assert "_blocks.8@nmf12" in text and "relative error" in text

    (tmp_path / "empty").mkdir()
    for bad, fragment in (
        (["concepts", str(tmp_path / "missing"), "--layer", "_blocks.8"], "dataset not found"),
        (["concepts", str(photos), "--layer", "_blocks.8", "--method", "pca"], "--method"),
        (["concepts", str(tmp_path / "empty"), "--layer", "_blocks.8", "--device", "cpu"],
         "no images"),
        (["concepts", str(photos), "--layer", "_blocks.99", "--device", "cpu"],
         "no layer named '_blocks.99'"),
        (["concepts", str(photos), "--layer", "_blocks.8", "--k", "0"], "--k must be positive"),
        (["concepts", str(photos)], "--layer"),
    ):
        try:
            status = cli.main(bad)
        except SystemExit as exit_:  # argparse's own errors: one line, status 2 too
            status = exit_.code
        assert status == 2, bad
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err, (bad, err)


def test_the_auxiliary_loss_moves_dead_latents_that_the_main_loss_leaves_alone():
    """A latent outside every sample's TopK gets no gradient from the reconstruction; once it
    counts as dead, AuxK gives it one (towards the residual the live latents miss)."""
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.standard_normal((2048, 16)), dtype=torch.float32)
    moved = {}
    for weight in (1 / 32, 0.0):
        fit = SAEFit(a, 64, 2, seed=0, total_steps=1, batch=8, aux_weight=weight)
        fit.idle[:] = fit.dead_after  # every latent has been silent for an epoch
        before = fit.params["w_dec"].clone()
        fit.step(1)
        # (renormalizing a unit row may change its last bit: a move is more than that)
        step = (fit.params["w_dec"] - before).abs().amax(1)
        moved[weight] = set((step > 1e-5).nonzero().flatten().tolist())
    assert 0 < len(moved[0.0]) <= 16 < len(moved[1 / 32])  # 8 samples × 2 active
    assert moved[0.0] < moved[1 / 32]


def test_a_transformer_block_is_sampled_token_by_token(tmp_path):
    """A ViT block's patch tokens are its positions (the class token is a layer of its own):
    10 images × a 4 × 4 grid give 160 samples, and the SAE's concepts add up to the block."""
    from torchvision.models import VisionTransformer

    from app.engine.runtime.vit_any_size import any_size

    torch.manual_seed(0)
    vit = any_size(VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                     hidden_dim=16, mlp_dim=32, num_classes=10)).eval()
    loaded = LoadedModel("tinyvit", vit, small_loaded().preprocess, tuple("abcdefghij"),
                         torch.device("cpu"))
    make_images(tmp_path / "images", 10)
    block = "encoder.layers.encoder_layer_0"
    d = run_job(learn_concepts(loaded, tmp_path / "images", block, 24, "sae", samples=1000,
                               iterations=100, out=tmp_path / "out"))
    assert d.samples == 160 and d.directions.shape == (24, 16) and d.signed
    assert d.concept_layer == f"{block}@sae24"
    from app.engine.runtime.recorder import ActivationRecorder

    with torch.no_grad(), ActivationRecorder(vit, [block]) as rec:
        rec.run(torch.randn(2, 3, 32, 32))
        grid = rec.activations[block]
    assert grid.shape == (2, 16, 4, 4)
    layer = ConceptLayer(d, torch.device("cpu"))
    parts = layer.decompose(grid)
    assert parts.codes.shape == (2, 24, 4, 4) and bool((parts.rest == 0).all())
    total = layer.component(parts.codes) + parts.residual
    assert torch.allclose(total, grid, atol=1e-5)
    assert bool(((parts.codes > 0).sum(1) <= d.active).all())


RANK_WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from app.core.jobs import run_job
from app.engine.analyses.concepts import learn_concepts
from app.engine.runtime import distributed
from test_concepts import small_loaded

rank, spec = int(sys.argv[1]), json.loads(sys.argv[2])
ranks = distributed.join(rank, 2, spec["init"])
d = run_job(learn_concepts(small_loaded(), spec["dataset"], "conv2", 5, spec["method"],
                           samples=400, batch_size=3, out=spec["out"], iterations=40,
                           tol=0.0, ranks=ranks))
print(json.dumps({{"directions": d.directions.tolist(), "images": d.images,
                   "samples": d.samples, "error": d.relative_error}}))
"""


@pytest.mark.parametrize("method", ["nmf", "sae"])
def test_two_ranks_learn_the_single_process_dictionary(tmp_path, method):
    """Two gloo ranks split 10 images (4 batches of 3: ranks take batches 0, 2 and 1, 3);
    rank 0 merges their reservoirs and fits: both return one process's dictionary."""
    import os
    import socket
    import subprocess
    import sys

    make_images(tmp_path / "images", 10)
    one, _ = learn(tmp_path / "one", method, iterations=40, tol=0.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = {"init": f"tcp://127.0.0.1:{port}", "dataset": str(tmp_path / "images"),
            "out": str(tmp_path / "two"), "method": method}
    repo = Path(__file__).resolve().parent.parent
    worker = RANK_WORKER.format(tests=str(repo / "tests"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(repo))
    procs = [subprocess.Popen([sys.executable, "-c", worker, str(r), json.dumps(spec)],
                              cwd=repo, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    docs = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("a rank hung") from None
        assert p.returncode == 0, err[-2000:]
        docs.append(json.loads(out.strip().splitlines()[-1]))
    for doc in docs:
        assert doc["images"] == 10 and doc["samples"] == one.samples == 400
        got = np.array(doc["directions"], dtype=np.float32)
        assert np.allclose(got, one.directions, atol=1e-6), np.abs(got - one.directions).max()
        assert doc["error"] == pytest.approx(one.relative_error, abs=1e-6)
    # rank 0 wrote the one result; the ranks' own parts are gone
    stored = load_dictionary(next((tmp_path / "two").glob(f"{method}5-*")))
    assert stored is not None
    assert np.array_equal(stored.directions, np.float32(docs[0]["directions"]))
    assert not list((tmp_path / "two").glob("samples-*/rank*"))
