"""The building blocks (Olah et al. 2018): exact checks on hand-weighted nets, then the real model.

The tiny nets have a head whose gradient is known in closed form, so act × grad is checked
against formulas written here, never against autograd. The bundled EfficientNet-Lite0 on the
sample photos checks what matters to a user: deleting the channels the attribution ranks first
hurts the class far more than deleting as many at random.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from app.cli import main
from app.core.class_names import ClassNameError, find_class
from app.core.settings import SettingsError, settings_from_dict
from app.engine.analyses.blocks import (
    BlocksError,
    ClassScore,
    LayerAttributor,
    LiveBlocks,
    class_score,
    faithfulness,
    integrated,
    neuron_groups,
    semantic_dictionary,
)
from app.engine.analyses.featurevis import objectives as obj
from tests.tiny_nets import TinyNet, tiny_input

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "assets" / "samples").glob("*.jpg"))
CPU = torch.device("cpu")


# -- a net whose gradient at the layer is known in closed form ------------------------------

class QuadHead(nn.Module):
    """conv(1→2, 2×2) → ReLU `act` → 1×1 `mix` → spatial mean p → logits F·p + q·Σp².

    At `act` (a, (2, H, W)) every position has the same gradient:
    ∂logit_k/∂a[c] = Σ_j (F[k, j] + 2 q_k p_j) M[j, c] / (H·W).
    """

    F = np.array([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.0]])
    Q = np.array([0.25, -0.5, 0.1])
    M = np.array([[1.0, 2.0], [-1.0, 1.0]])

    def __init__(self, concat_skip: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 2)
        self.act = nn.ReLU()
        self.mix = nn.Conv2d(2, 2, 1, bias=False)
        self.concat_skip = concat_skip  # a branch from below `act` joined by concatenation
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]],
                                                 [[[1.0, 0.0], [0.0, -1.0]]]]))
            self.conv.bias.copy_(torch.tensor([-20.0, 0.5]))
            self.mix.weight.copy_(torch.tensor(self.M, dtype=torch.float32)[:, :, None, None])
        self.f = torch.tensor(self.F, dtype=torch.float32)
        self.q = torch.tensor(self.Q, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.conv(x)
        p = self.mix(self.act(pre)).mean((2, 3))
        out = p @ self.f.T + self.q * (p * p).sum(1, keepdim=True)
        if self.concat_skip:  # the skip's own logit column, constant in the layer
            out = torch.cat([out, pre.mean((1, 2, 3))[:, None]], 1)[:, :3]
        return out


def quad_input() -> torch.Tensor:
    return torch.tensor([[[[1.0, 3.0, 2.0], [6.0, 4.0, 0.0], [2.0, 9.0, 5.0]]]])


def quad_expected(a: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """(gradient (2, H, W), logit k) at activation a by the closed form."""
    hw = a.shape[1] * a.shape[2]
    p = QuadHead.M @ a.reshape(2, -1).mean(1)
    logit = float(QuadHead.F[k] @ p + QuadHead.Q[k] * (p @ p))
    g = (QuadHead.F[k] + 2 * QuadHead.Q[k] * p) @ QuadHead.M / hw
    return np.broadcast_to(g[:, None, None], a.shape).copy(), logit


def quad_activation() -> np.ndarray:
    x = quad_input()[0, 0].numpy().astype(np.float64)
    win = np.array([[x[i:i + 2, j:j + 2] for j in range(2)] for i in range(2)])  # (2, 2, 2, 2)
    c0 = win.sum((2, 3)) - 20.0
    c1 = win[:, :, 0, 0] - win[:, :, 1, 1] + 0.5
    return np.maximum(np.stack([c0, c1]), 0.0)


def test_channel_and_spatial_attribution_are_hand_computed_act_times_grad():
    a = quad_activation()
    assert (a[0] > 0).any() and (a[0] == 0).any()  # the ReLU cuts some of channel 0
    for fast in (True, False):
        att = LayerAttributor(QuadHead(), fast=fast)
        for k, vs in ((0, None), (1, None), (0, 2)):
            r = att.attribute(quad_input(), "act", ClassScore(k, vs))
            g, logit = quad_expected(a, k)
            if vs is not None:
                g_vs, logit_vs = quad_expected(a, vs)
                g, logit = g - g_vs, logit - logit_vs
            np.testing.assert_allclose(r.activations, a, rtol=1e-6)
            np.testing.assert_allclose(r.gradient, g, rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(r.channels, (a * g).sum((1, 2)), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(r.spatial, (a * g).sum(0), rtol=1e-5, atol=1e-6)
            assert r.score == pytest.approx(logit, rel=1e-5)
            assert (r.target, r.vs) == (k, vs)


def test_top1_default_batches_and_the_users_model_is_untouched():
    model = QuadHead()
    fired: list[int] = []
    handle = model.act.register_forward_hook(lambda *_: fired.append(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.cat([quad_input(), quad_input().flip(-1)])
    att = LayerAttributor(model)
    both = att.attribute_batch(x, "act", ClassScore())
    for i, r in enumerate(both):
        one = att.attribute(x[i:i + 1], "act", ClassScore())
        np.testing.assert_allclose(r.channels, one.channels, rtol=1e-6)
        assert r.target == int(model(x[i:i + 1]).argmax())
        assert r.probability == pytest.approx(
            float(torch.softmax(model(x[i:i + 1]).detach(), 1)[0, r.target]), rel=1e-5)
    handle.remove()
    assert len(fired) == 4  # our own direct calls above; the attributor runs its copy
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # the user's flags, as they were
    assert model.training and not model.act._forward_hooks


def test_a_frame_from_the_live_workers_no_grad_or_inference_mode_works():
    att = LayerAttributor(QuadHead())
    want = att.attribute(quad_input(), "act", ClassScore(1)).channels
    with torch.inference_mode():
        frame = quad_input() * 1.0  # an inference tensor, as the worker's could be
        got = att.attribute(frame, "act", ClassScore(1)).channels
        p = att.deleted_probabilities(frame, "act", 1, [[0]])
    with torch.no_grad():
        again = integrated(att, quad_input(), "act", ClassScore(1), steps=2)
    np.testing.assert_array_equal(got, want)
    assert p.shape == (1,) and abs(again.gap) < 1e-5
    assert torch.is_grad_enabled()  # the job left the caller's grad mode as it was


def test_repeated_module_and_in_place_residual_match_a_hand_written_forward():
    """TinyNet's `shared` runs twice, and `z += y` writes into its first output in place."""
    net = TinyNet().eval()
    x = tiny_input()
    with torch.no_grad():
        y = torch.relu(net.conv(x))
        first = net.shared(y)
        second = net.shared(first + y)
    att = LayerAttributor(net)
    for layer, value in (("shared", first), ("shared:1", second)):
        leaf = value.clone().requires_grad_(True)
        top = net.shared(leaf + y) if layer == "shared" else leaf
        logits = net.fc(net.pool(top).flatten(1))
        (g,) = torch.autograd.grad(logits[0, 2], leaf)
        r = att.attribute(x, layer, ClassScore(2))
        np.testing.assert_allclose(r.activations, value[0].numpy(), rtol=1e-6)
        np.testing.assert_allclose(r.gradient, g[0].numpy(), rtol=1e-6)
        np.testing.assert_allclose(r.channels, (value * g)[0].sum((1, 2)).numpy(), rtol=1e-5)
        assert r.score == pytest.approx(float(logits[0, 2].detach()), rel=1e-6)


def test_path_integrated_attribution_is_complete():
    att = LayerAttributor(QuadHead())
    a = quad_activation()
    for k in (0, 1):
        # the head is quadratic in the activations: the midpoint rule is exact
        r = integrated(att, quad_input(), "act", ClassScore(k), steps=3, batch_size=2)
        _, full = quad_expected(a, k)
        _, zero = quad_expected(np.zeros_like(a), k)
        assert (r.score, r.baseline) == (pytest.approx(full, rel=1e-5), pytest.approx(zero))
        assert r.total == pytest.approx(full - zero, rel=1e-5, abs=1e-6)
        assert abs(r.gap) < 1e-5 * max(1.0, abs(full))
        lin = att.attribute(quad_input(), "act", ClassScore(k))
        assert not np.allclose(r.channels, lin.channels)  # the path matters here


def test_a_branch_joined_by_concatenation_falls_back_to_repeating_the_input():
    plain, joined = LayerAttributor(QuadHead()), LayerAttributor(QuadHead(concat_skip=True))
    r0 = integrated(plain, quad_input(), "act", ClassScore(1), steps=4)
    r1 = integrated(joined, quad_input(), "act", ClassScore(1), steps=4)
    assert joined._expand["act"] is False and plain._expand["act"] is True
    np.testing.assert_allclose(r1.channels, r0.channels, rtol=1e-5)
    assert abs(r1.gap) < 1e-5


def test_deleting_channels_zeroes_them_at_the_layer():
    att = LayerAttributor(QuadHead())
    a = quad_activation()
    p = att.deleted_probabilities(quad_input(), "act", 1, [[], [0], [1], [0, 1]])
    for units, got in zip(([], [0], [1], [0, 1]), p, strict=True):
        b = a.copy()
        b[units] = 0.0
        logits = np.array([quad_expected(b, k)[1] for k in range(3)])
        expect = np.exp(logits - logits.max())
        assert got == pytest.approx(expect[1] / expect.sum(), rel=1e-5)
    lin = att.attribute(quad_input(), "act", ClassScore(1))
    f = faithfulness(att, quad_input(), "act", 1, lin.channels, ks=(1, 5), seeds=3)
    assert f.ks == (1, 2) and f.intact == pytest.approx(p[0], rel=1e-6)
    assert f.top_deleted[0] == pytest.approx(p[1 + int(np.argmax(lin.channels))], rel=1e-6)
    assert f.top_deleted[1] == pytest.approx(p[3], rel=1e-6)  # all channels: both deleted
    assert f.random_deleted[1] == pytest.approx(p[3], rel=1e-6) and f.random_std[1] < 1e-7


def test_bad_layers_and_scores_are_one_line_errors():
    att = LayerAttributor(QuadHead())
    with pytest.raises(BlocksError, match="no layer named 'nope'"):
        att.attribute(quad_input(), "nope", ClassScore(0))
    with pytest.raises(BlocksError, match="was not run"):
        att.attribute(quad_input(), "act:3", ClassScore(0))
    with pytest.raises(BlocksError, match="one value per image"):
        att.attribute(quad_input(), "act", lambda out: out.sum())
    with pytest.raises(BlocksError, match=r"\(1, 3, H, W\)"):
        att.attribute(torch.cat([quad_input()] * 2), "act", ClassScore(0))


# -- dictionary, groups ------------------------------------------------------------------

def test_dictionary_is_the_argsort_of_each_positions_activations():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 3, 5)).astype(np.float32)
    a[2, 1, 1] = a[5, 1, 1] = 10.0  # a tie: the lower index comes first
    d = semantic_dictionary(torch.from_numpy(a)[None], top=4)
    assert d.units.shape == (3, 5, 4) and d.top == 4
    for y in range(3):
        for x in range(5):
            order = np.argsort(-a[:, y, x], kind="stable")[:4]
            assert [u for u, _ in d.at(y, x)] == order.tolist()
            np.testing.assert_array_equal(d.values[y, x], a[order, y, x])
    assert [u for u, _ in d.at(1, 1)][:2] == [2, 5]
    assert semantic_dictionary(a[:2], top=4).top == 2  # never more than the channels


def _low_rank(seed: int = 0, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    spatial = rng.random((k, 6, 7)) * (rng.random((k, 6, 7)) > 0.4)
    channels = rng.random((k, 20)) * (rng.random((k, 20)) > 0.5)
    return np.einsum("khw,kc->chw", spatial, channels).astype(np.float32), spatial


def test_nmf_recovers_a_non_negative_low_rank_layer():
    acts, _ = _low_rank()
    grad = np.random.default_rng(1).normal(size=acts.shape).astype(np.float32)
    g = neuron_groups(acts, 3, gradient=grad, iterations=300, tol=0)
    assert g.k == 3 and not g.positive_part and "non-negative" in g.note
    assert (g.spatial >= 0).all() and (g.channels >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(g.channels, axis=1), 1.0, rtol=1e-5)
    assert g.relative_error < 1e-3
    # the spatial factors, spread over channels, rebuild the activations as factorized
    rec = g.reconstruction()
    assert np.linalg.norm(rec - acts) / np.linalg.norm(acts) == pytest.approx(
        g.relative_error, abs=1e-5)
    assert g.attribution is not None
    assert float(g.attribution.sum()) == pytest.approx(float((acts * grad).sum()), rel=1e-3)
    # deterministic, and biggest group first
    again = neuron_groups(acts, 3, gradient=grad, iterations=300, tol=0)
    np.testing.assert_array_equal(g.spatial, again.spatial)
    assert list(g.spatial.sum((1, 2))) == sorted(g.spatial.sum((1, 2)), reverse=True)


def test_nmf_signed_layer_warm_start_and_error_bound():
    acts, _ = _low_rank(seed=2, k=6)
    noisy = acts + np.random.default_rng(3).normal(0, 0.05, acts.shape).astype(np.float32)
    g = neuron_groups(noisy, 6)
    assert g.positive_part and "positive part" in g.note
    v = np.maximum(noisy, 0).reshape(20, -1).T
    s = np.linalg.svd(v, compute_uv=False)
    best = float(np.sqrt((s[6:] ** 2).sum() / (s ** 2).sum()))  # no rank-6 fit does better
    assert best <= g.relative_error < best + 0.05
    # the next frame: a small change, started from this one, keeps the groups' order
    moved = noisy * 1.02
    warm = neuron_groups(moved, 6, warm=g, iterations=5, tol=0)
    assert warm.iterations == 5 and warm.relative_error < g.relative_error + 0.01
    cos = (warm.channels * g.channels).sum(1)
    assert (cos > 0.98).all()
    few = neuron_groups(noisy[:3], 6)  # 3 channels: at most 3 groups
    assert few.k == 3 and "3 groups" in few.note
    none = neuron_groups(-np.abs(noisy), 4, gradient=noisy)
    assert none.relative_error == 0.0 and none.iterations == 0 and "no groups" in none.note


def test_live_blocks_warm_start_per_layer():
    blocks = LiveBlocks(QuadHead(), groups=2, dictionary_top=1)
    f1 = blocks.process(quad_input(), "act", ClassScore(0))
    f2 = blocks.process(quad_input(), "act", ClassScore(0))
    assert f1.groups is not None and f2.groups is not None and f1.dictionary is not None
    assert f2.groups.iterations <= blocks.warm_iterations
    assert f1.attribution_ms > 0 and f2.dictionary is not None and f2.dictionary.top == 1


# -- the direction objective, class names, settings ----------------------------------------

def test_direction_objective_is_the_dot_product_with_the_activation_vector():
    acts = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    img = torch.zeros(2, 3, 4, 4)
    vec = torch.tensor([1.0, -1.0, 0.5])
    want = torch.einsum("nchw,c->nhw", acts, vec).flatten(1).mean(1)
    torch.testing.assert_close(obj.direction(vec)(acts, img), want)
    torch.testing.assert_close(obj.direction([[1, 0, 0], [0, 0, 1]])(acts, img),
                               torch.stack([acts[0, 0].mean(), acts[1, 2].mean()]))
    torch.testing.assert_close(obj.direction(vec, y=1, x=0)(acts, img),
                               (acts[:, :, 1, 0] * vec).sum(1))
    torch.testing.assert_close(obj.direction(vec)(acts[:, :, 0, 0], img),
                               (acts[:, :, 0, 0] * vec).sum(1))
    combined = obj.direction(vec) - 0.5 * obj.channel(0)
    torch.testing.assert_close(combined(acts, img), want - 0.5 * acts[:, 0].mean((1, 2)))
    with pytest.raises(ValueError, match="direction of shape"):
        obj.direction([1.0, 2.0])(acts, img)


def test_classes_by_index_or_name():
    names = ("tabby", "tiger cat", "crane", "crane", "Egyptian cat")
    assert find_class("1", names) == 1 and find_class(4, names) == 4
    assert find_class("Tiger_Cat", names) == 1 and find_class("egyptian-cat", names) == 4
    with pytest.raises(ClassNameError, match=r"several classes \[2, 3\]"):
        find_class("crane", names)
    with pytest.raises(ClassNameError, match="did you mean 'tabby'"):
        find_class("tabbby", names)
    with pytest.raises(ClassNameError, match="out of range"):
        find_class("5", names)
    assert class_score("tabby", names, vs=4) == ClassScore(0, 4)
    assert class_score(None, names).describe(names) == "the top-1 class"


def test_blocks_settings_defaults_and_validation():
    s = settings_from_dict({"blocks": {"groups": 3}})
    assert (s.blocks.groups, s.blocks.dictionary_top, s.blocks.integrated_steps) == (3, 4, 100)
    with pytest.raises(SettingsError, match=r"\[blocks\].integrated_steps must be positive"):
        settings_from_dict({"blocks": {"integrated_steps": 0}})
    with pytest.raises(SettingsError, match=r"unknown key \[blocks\].top"):
        settings_from_dict({"blocks": {"top": 3}})


# -- the bundled model on real photos ------------------------------------------------------

@pytest.fixture(scope="module")
def bundled():
    from app.engine.runtime.models import load_bundled

    return load_bundled(CPU)


def _photo_input(loaded, path: Path) -> torch.Tensor:  # type: ignore[no-untyped-def]
    from app.capture.images import read_image
    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch

    return prepare_batch([frame_to_tensor(read_image(path), CPU)], loaded.preprocess)


@pytest.mark.slow
def test_deleting_the_top_attributed_channels_hurts_far_more_than_random(bundled):
    from app.engine.runtime.recorder import default_layer, discover_layers

    layer = default_layer(discover_layers(bundled.module, 224, CPU)[0])  # a middle block
    att = LayerAttributor(bundled)
    assert len(SAMPLES) >= 5
    print(f"\n{layer}: probability of the top-1 class, intact → 10 top-attributed / "
          "10 random channels deleted (mean of 5 seeds)")
    for path in SAMPLES:
        x = _photo_input(bundled, path)
        r = att.attribute(x, layer, ClassScore())
        with torch.no_grad():
            logits = bundled.module(x)
        assert r.target == int(logits.argmax())
        np.testing.assert_allclose(r.logits, logits[0].numpy(), rtol=1e-4, atol=1e-4)
        f = faithfulness(att, x, layer, r.target, r.channels, ks=(10,), seeds=5)
        drop_top, drop_random = f.intact - f.top_deleted[0], f.intact - f.random_deleted[0]
        print(f"  {path.name:18s} {bundled.class_names[r.target]:16s} {f.intact:.3f} → "
              f"{f.top_deleted[0]:.3f} / {f.random_deleted[0]:.3f}")
        assert drop_top > 0.2 * f.intact, path.name
        assert drop_top > 2.0 * max(drop_random, 0.0), path.name


@pytest.mark.slow
def test_a_conv_whose_batch_norm_was_folded_is_attributed_as_the_users(bundled):
    x = _photo_input(bundled, ROOT / "assets" / "samples" / "coffee.jpg")
    fast, plain = LayerAttributor(bundled), LayerAttributor(bundled, fast=False)
    for layer in ("_conv_head", "_blocks.7._project_conv"):  # both feed a batch norm
        a, b = fast.attribute(x, layer, ClassScore()), plain.attribute(x, layer, ClassScore())
        np.testing.assert_allclose(a.activations, b.activations,
                                   atol=1e-4 * float(np.abs(b.activations).max()))
        np.testing.assert_allclose(a.channels, b.channels,
                                   atol=1e-4 * float(np.abs(b.channels).max()))
    assert fast._folded  # the copy was folded, and the targets mapped back


@pytest.mark.slow
def test_integrated_attribution_on_the_bundled_model_converges_to_complete(bundled):
    att = LayerAttributor(bundled)
    x = _photo_input(bundled, ROOT / "assets" / "samples" / "coffee.jpg")
    coarse = integrated(att, x, "_blocks.10", ClassScore(), steps=10)
    fine = integrated(att, x, "_blocks.10", ClassScore(), steps=100)
    assert coarse.target == fine.target == 967  # espresso
    print(f"\ncompleteness gap, 10 steps {coarse.gap:+.4f}, 100 steps {fine.gap:+.4f} "
          f"(score − baseline {fine.score - fine.baseline:.3f})")
    assert abs(fine.gap) < abs(coarse.gap)
    assert abs(fine.gap) < 0.05 * abs(fine.score - fine.baseline)


# -- the command line ----------------------------------------------------------------------

def _run(capsys, *argv: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_explain_json_holds_every_block(capsys):
    cat = str(ROOT / "assets" / "samples" / "chelsea.jpg")
    code, out, err = _run(capsys, "explain", cat, "--layer", "_blocks.11", "--class", "tabby",
                          "--vs", "285", "--groups", "3", "--integrated", "8", "--json",
                          "--device", "cpu")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layer"] == "_blocks.11" and doc["shape"] == [192, 7, 7]
    (r,) = doc["results"]
    assert r["class"] == {"index": 281, "label": "tabby"}
    assert r["vs"] == {"index": 285, "label": "Egyptian cat"}
    assert r["method"] == "integrated" and r["integrated"]["steps"] == 8
    values = [c["attribution"] for c in r["channels"]]
    assert sorted(c["unit"] for c in r["channels"]) == list(range(192))
    assert values == sorted(values, reverse=True)
    assert np.asarray(r["spatial"]).shape == (7, 7)
    assert len(r["dictionary"]) == 7 and len(r["dictionary"][0]) == 7
    assert all(len(cell) == 4 for row in r["dictionary"] for cell in row)
    assert len(r["groups"]) == 3 and set(r["groups"][0]) == {
        "channel_factor", "spatial_factor", "attribution"}
    assert np.asarray(r["groups"][0]["spatial_factor"]).shape == (7, 7)
    assert 0 <= r["groups_relative_error"] < 1 and r["groups_positive_part"] is True
    f = r["faithfulness"]
    assert f["k"] == [1, 5, 10] and len(f["top_deleted"]) == len(f["random_deleted"]) == 3


@pytest.mark.slow
def test_explain_text_table(capsys):
    code, out, err = _run(capsys, "explain", str(ROOT / "assets" / "samples" / "coffee.jpg"),
                          "--layer", "_blocks.15", "--device", "cpu")
    assert code == 0, err
    assert "espresso (967)" in out and "deletion test" in out and "10 deleted" in out


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--layer", "_blocks.7", "--class", "no such class"], "unknown class 'no such class'"),
    (["--layer", "_blocks.7", "--class", "1000"], "class 1000 out of range"),
    (["--layer", "_blocks.7", "--vs", "tabbby"], "did you mean 'tabby'"),
    (["--layer", "nope"], "no recordable layer 'nope'"),
    (["--layer", "_blocks.7", "--groups", "0"], "--groups must be positive"),
])
def test_explain_bad_arguments_exit_2_with_one_line(capsys, argv, fragment):
    code, _, err = _run(capsys, "explain", str(SAMPLES[0]), *argv, "--device", "cpu")
    assert code == 2 and fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_explain_missing_image_exits_2(capsys):
    code, _, err = _run(capsys, "explain", "/no/such.jpg", "--layer", "_blocks.7")
    assert code == 2 and "image not found: /no/such.jpg" in err and err.count("\n") == 1
