"""Feature visualization: each part on its own, then the loop on tiny nets, then the real model."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import threading

import numpy as np
import pytest
import torch
from tiny_nets import SharedAct, TinyNet, tiny_input
from torch import nn

from app.core.jobs import Cancelled, run_job
from app.engine.analyses.featurevis import objectives as obj
from app.engine.analyses.featurevis import param as prm
from app.engine.analyses.featurevis import regularizers as reg
from app.engine.analyses.featurevis import transforms as tf
from app.engine.analyses.featurevis.presets import PRESETS, Preset, PresetError, get_preset
from app.engine.analyses.featurevis.render import Renderer, cached_unit, image_seed, render_units
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import Preprocess
from app.engine.runtime.recorder import ActivationRecorder
from app.engine.runtime.truncate import LayerNotReached, TruncatedModel

CPU = torch.device("cpu")


def rngs(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


# -- transforms ---------------------------------------------------------------------------


def test_pad_adds_gray_border():
    x = torch.zeros(2, 3, 5, 7)
    y = tf.pad(3)(x, rngs(0, 1))
    assert y.shape == (2, 3, 11, 13)
    assert torch.all(y[..., :3, :] == 0.5) and torch.all(y[..., 3:8, 3:10] == 0)


def test_jitter_is_a_crop_at_each_images_own_offset():
    x = torch.arange(2 * 3 * 10 * 10, dtype=torch.float32).view(2, 3, 10, 10)
    g = rngs(5, 6)
    y = tf.jitter(4)(x, g)
    assert y.shape == (2, 3, 6, 6)
    for i in range(2):
        # the window's top-left value tells its offset; the rest must be that exact crop
        flat = int(y[i, 0, 0, 0]) - i * 300
        oy, ox = divmod(flat, 10)
        assert 0 <= oy <= 4 and 0 <= ox <= 4
        assert torch.equal(y[i], x[i, :, oy : oy + 6, ox : ox + 6])


def test_rotate_quarter_turn_matches_rot90_and_scale_zooms_about_center():
    x = torch.rand(1, 3, 9, 9)
    assert torch.allclose(tf.rotate(x, 90.0), torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    assert torch.allclose(tf.rotate(x, 0.0), x, atol=1e-6)
    # a centered 2-px square zoomed ×2 becomes a centered 4-px square
    sq = torch.zeros(1, 1, 8, 8)
    sq[..., 3:5, 3:5] = 1.0
    z = tf.affine(sq, 2.0, 0.0)
    assert torch.allclose(z[..., 3:5, 3:5], torch.ones(1, 1, 2, 2))
    assert torch.allclose(z, z.flip(-1)) and torch.allclose(z, z.flip(-2))  # still centered
    assert float(z[..., 0, :].max()) == 0.0 and float(z[..., :, -1].max()) == 0.0
    assert float(z.sum()) == pytest.approx(16.0, rel=0.15)


def test_standard_transforms_size_and_per_image_determinism():
    x = torch.rand(3, 3, 32, 32)
    t = tf.standard_transforms(1.0)
    a = t(x, rngs(1, 2, 3))
    b = t(x, rngs(1, 2, 3))
    assert a.shape == (3, 3, 44, 44) and torch.equal(a, b)
    # an image's draws come from its own generator: image 0 is the same in a batch of one
    alone = t(x[:1], rngs(1))
    assert torch.allclose(alone[0], a[0], atol=1e-6)
    assert not torch.allclose(a[0], t(x[:1], rngs(9))[0])



@pytest.mark.parametrize("strength", [1.0, 0.5, 0.25])
def test_fused_standard_transforms_equal_the_chain_step_by_step(strength):
    # the oracle: the four transforms run in turn (each tested on its own above)
    s = strength
    width, shift, last = round(12 * s), round(8 * s), round(4 * s)
    factors = [1 + s * (i - 5) / 50 for i in range(11)]
    angles = [s * a for a in range(-10, 11)]
    chain = tf.compose([tf.pad(width), tf.jitter(shift), tf.random_affine(factors, angles),
                        tf.jitter(last)])
    fused = tf.standard_transforms(s)
    for seed in range(8):
        x = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(seed))
        mine, theirs = rngs(seed, seed + 10, seed + 20), rngs(seed, seed + 10, seed + 20)
        got, want = fused(x, mine), chain(x, theirs)
        assert got.shape == want.shape == (3, 3, 40 + 12 * s, 40 + 12 * s)
        torch.testing.assert_close(got, want, atol=5e-5, rtol=0)
        # the same numbers were drawn: the generators are in the same state after
        for a, b in zip(mine, theirs, strict=True):
            assert torch.equal(torch.randint(1 << 30, (4,), generator=a),
                               torch.randint(1 << 30, (4,), generator=b))
    # with a window: the chain's result windowed, the window's draws after the chain's
    x = torch.rand(2, 3, 40, 40)
    got = fused(x, rngs(5, 6), window=24)
    theirs = rngs(5, 6)
    torch.testing.assert_close(got, tf.window(chain(x, theirs), 24, theirs), atol=5e-5, rtol=0)
    # and the gradient reaching the image is the chain's
    x = torch.rand(1, 3, 40, 40, requires_grad=True)
    weights = torch.rand(1, 3, 40 + round(12 * s), 40 + round(12 * s))
    (fused(x, rngs(3)) * weights).sum().backward()
    grad = x.grad.clone()
    x.grad = None
    (chain(x, rngs(3)) * weights).sum().backward()
    torch.testing.assert_close(grad, x.grad, atol=5e-5, rtol=0)

# -- regularizers -------------------------------------------------------------------------


def test_gaussian_blur_of_a_point_is_the_normalized_kernel():
    x = torch.zeros(1, 1, 15, 15)
    x[0, 0, 7, 7] = 1.0
    y = reg.gaussian_blur(x, 1.0)
    k = reg.gaussian_kernel1d(1.0)
    r = (k.numel() - 1) // 2
    assert float(y.sum()) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(y[0, 0, 7 - r : 8 + r, 7 - r : 8 + r], torch.outer(k, k), atol=1e-6)
    assert float(y[0, 0, 7, 7]) == pytest.approx(1 / (2 * math.pi), rel=0.02)
    const = torch.full((1, 3, 6, 6), 0.3)
    assert torch.allclose(reg.gaussian_blur(const, 2.0), const, atol=1e-6)


def test_total_variation_of_known_images():
    h, w = 6, 8
    assert float(reg.total_variation(torch.full((1, 1, h, w), 0.7))[0]) == 0.0
    edge = torch.zeros(1, 1, h, w)
    edge[..., w // 2 :] = 1.0
    assert float(reg.total_variation(edge)[0]) == pytest.approx(h / (h * w))
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    checker = ((yy + xx) % 2).float().view(1, 1, h, w)
    expected = (h * (w - 1) + (h - 1) * w) / (h * w)
    assert float(reg.total_variation(checker)[0]) == pytest.approx(expected)


def test_step_operators():
    x = torch.tensor([[[[1.0, -2.0], [0.1, 0.0]]]]).expand(1, 3, 2, 2).clone()
    reg.l2_decay(0.5)(1, x, torch.zeros_like(x))
    assert torch.allclose(x[0, 0], torch.tensor([[0.5, -1.0], [0.05, 0.0]]))
    reg.clip_small_norm(50)(1, x, torch.zeros_like(x))
    assert torch.equal(x[0, 0] != 0, torch.tensor([[True, True], [False, False]]))
    y = torch.ones(1, 3, 2, 2)
    grad = torch.tensor([[[[5.0, 0.1], [3.0, -4.0]]]]).expand(1, 3, 2, 2)
    reg.clip_small_contribution(25)(1, y, grad)
    assert torch.equal(y[0, 0] != 0, torch.tensor([[True, False], [True, True]]))
    z = torch.rand(1, 3, 8, 8)
    before = z.clone()
    reg.blur_every(4, 1.0)(3, z, z)
    assert torch.equal(z, before)
    reg.blur_every(4, 1.0)(4, z, z)
    assert not torch.equal(z, before)


# -- parametrizations ---------------------------------------------------------------------


def test_decorrelation_matrix_is_a_scaled_pca_basis():
    m = prm.COLOR_CORRELATION
    norms = m.norm(dim=0)
    assert float(norms.max()) == pytest.approx(1.0)
    assert torch.all(norms[:-1] > norms[1:])  # principal directions by decreasing variance
    cos = (m.T @ m) / torch.outer(norms, norms)
    # orthogonal columns, up to the two decimals the constant is published with
    assert torch.allclose(cos, torch.eye(3), atol=0.12)
    lum = m[:, 0]
    assert torch.all(lum > 0) and float(lum.max() / lum.min()) < 1.1  # first: luminance
    x = torch.randn(2, 3, 4, 4)
    assert torch.allclose(prm.correlate_colors(prm.decorrelate_colors(x)), x, atol=1e-5)


def test_fourier_parametrization_round_trip():
    h, w = 12, 10
    scale = prm.spectrum_scale(h, w)
    assert float(scale[0, 0]) == max(h, w)  # DC capped at the lowest frequency
    assert float(scale[0, 1]) == pytest.approx(w)  # 1/f: one cycle per width
    x = torch.randn(2, 3, h, w)
    assert torch.allclose(prm.spectrum_to_image(prm.image_to_spectrum(x, scale), scale, h, w),
                          x, atol=1e-5)
    img = torch.rand(2, 3, h, w) * 0.8 + 0.1
    p = prm.FourierImage(rngs(0, 1), h, w, CPU)
    with torch.no_grad():
        p.spectrum.copy_(prm.fourier_from_image(img))
        assert torch.allclose(p(), img, atol=1e-4)


def test_fourier_init_is_smooth_gray_and_pixel_init_is_centered():
    p = prm.FourierImage(rngs(0), 64, 64, CPU)
    img = p().detach()
    assert abs(float(img.mean()) - 0.5) < 0.02
    px = prm.PixelImage(rngs(0), 16, 16, CPU)
    assert abs(float(px().detach().mean()) - 0.5) < 0.01
    with pytest.raises(ValueError, match="pixel or fourier"):
        prm.make_param("cppn", rngs(0), 8, 8, CPU)


# -- objectives ---------------------------------------------------------------------------


def test_objectives_pick_per_image_values_and_combine():
    acts = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    img = torch.zeros(2, 3, 4, 4)
    assert obj.channel([1, 2])(acts, img).tolist() == [5.5, 21.5]
    assert obj.channel(0)(acts, img).tolist() == [1.5, 13.5]
    assert obj.neuron([1, 2], 0, 1)(acts, img).tolist() == [5.0, 21.0]
    assert obj.neuron([0, 0])(acts, img).tolist() == [3.0, 15.0]  # center of a 2×2 map
    logits = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert obj.class_logit([2, 0])(logits, img).tolist() == [3.0, 4.0]
    combo = 2 * obj.channel([1, 2]) - obj.channel(0) + 1.0
    assert combo(acts, img).tolist() == [2 * 5.5 - 1.5 + 1, 2 * 21.5 - 13.5 + 1]
    assert sum([obj.channel(0), obj.channel(1)])(acts, img).tolist() == [7.0, 31.0]
    with pytest.raises(ValueError, match="3 units for a batch of 2"):
        obj.channel([0, 1, 2])(acts, img)
    with pytest.raises(ValueError, match="class_logit"):
        obj.class_logit(0)(acts, img)


def test_diversity_penalizes_alike_images():
    same = torch.rand(1, 4, 3, 3).expand(3, 4, 3, 3)
    assert torch.allclose(obj.diversity()(same, same), torch.full((3,), -1.0), atol=1e-5)
    apart = torch.zeros(2, 2, 2, 2)
    apart[0, 0] = 1.0
    apart[1, 1] = 1.0
    assert torch.allclose(obj.diversity()(apart, apart), torch.zeros(2), atol=1e-6)


# -- truncated forward --------------------------------------------------------------------


class Counting(nn.Module):
    """Identity that counts its calls on the class, so deep copies count too."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Counting.calls += 1
        return x


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.above = Counting()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.above(self.b(self.a(x))))


def test_truncated_forward_matches_full_and_runs_nothing_above():
    net = Stack().eval()
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad(), ActivationRecorder(net, ["b"]) as rec:
        rec.run(x)
        full = rec.activations["b"].clone()
    Counting.calls = 0
    tm = TruncatedModel(net, "b", CPU)
    out = tm(x)
    assert torch.allclose(out, full) and Counting.calls == 0
    Counting.calls = 0
    assert TruncatedModel(net, "", CPU)(x).shape == (2, 5) and Counting.calls == 1
    with pytest.raises(KeyError, match="no layer"):
        TruncatedModel(net, "nope", CPU)


def test_truncated_copy_leaves_the_live_model_alone():
    net = Stack().eval()
    seen = []
    handle = net.b.register_forward_hook(lambda m, i, o: seen.append(1))
    try:
        tm = TruncatedModel(net, "b", CPU)
        tm(torch.rand(1, 3, 8, 8))
        assert seen == []  # the live model's hook was not copied along
        assert all(p.requires_grad for p in net.parameters())
        assert not any(p.requires_grad for p in tm.model.parameters())
        assert len(net.b._forward_hooks) == 1
    finally:
        handle.remove()


def test_private_copy_survives_foreign_hooks_holding_graph_tensors():
    class Keeper:  # like lucent's ModuleHook: keeps the last output, never removed
        def hook(self, module, inputs, output):
            self.features = output

    net = Stack().eval()
    keeper = Keeper()
    net.b.register_forward_hook(keeper.hook)
    net(torch.rand(1, 3, 8, 8, requires_grad=True))  # keeper now holds a non-leaf tensor
    tm = TruncatedModel(net, "b", CPU)
    before = keeper.features
    tm(torch.rand(1, 3, 8, 8))
    assert keeper.features is before and len(net.b._forward_hooks) == 1


def test_repeat_calls_are_counted_as_the_recorder_names_them():
    from app.engine.runtime.truncate import forward_to

    net = SharedAct().eval()
    x = torch.randn(1, 3, 9, 9)
    with torch.no_grad(), ActivationRecorder(net) as rec:
        rec.run(x)
        assert [k for k in rec.activations if k.startswith("act")] == ["act", "act:1"]
        for name in ("act", "act:1"):
            assert torch.equal(forward_to(net, name, x), rec.activations[name])


def test_truncated_repeat_call_of_shared_module():
    net = TinyNet().eval()
    x = tiny_input()
    with torch.no_grad(), ActivationRecorder(net) as rec:
        rec.run(x)
        second = rec.activations["shared:1"].clone()
    assert torch.allclose(TruncatedModel(net, "shared:1", CPU)(x), second)
    with pytest.raises(LayerNotReached):
        TruncatedModel(net, "shared:2", CPU)(x)


# -- the loop on tiny nets ----------------------------------------------------------------


def loaded_of(net: nn.Module, size: int = 16) -> LoadedModel:
    pre = Preprocess(size, 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return LoadedModel("tiny", net.eval(), pre, tuple(f"c{i}" for i in range(5)), CPU)


class Linear(nn.Module):
    """Unit k of `unit` = w_k · x: one conv whose kernel covers the whole 8×8 image."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.below = Counting()
        self.unit = nn.Conv2d(3, 2, 8, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(self.below(x)).flatten(1)


def with_images(progress):
    """The previews and finals of a render: the steps in between carry no images."""
    return [p for p in progress if p.images is not None]


def tiny_preset(**changes: object) -> Preset:
    base = Preset(name="test", description="", param="pixel", decorrelate=False,
                  optimizer="sgd", lr=0.001, steps=300, size=8, transforms=0.0,
                  preview_every=10)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_l2_decayed_ascent_on_a_linear_unit_ends_along_its_weights():
    net = Linear()
    r = Renderer(loaded_of(net, 8), "unit", CPU)
    preset = tiny_preset(l2_decay=0.1)
    *previews, final = with_images(r.render([0, 1], preset, seed=0))
    w = net.unit.weight.detach()
    d = torch.from_numpy(final.images).permute(0, 3, 1, 2).float() / 255 - 0.5
    for k in range(2):
        # fixed point of x ← (1-θ)(x + η g/mean|g|) with g = w: x ∝ w
        cos = torch.nn.functional.cosine_similarity(d[k].flatten(), w[k].flatten(), dim=0)
        assert float(cos) > 0.95
        values = [p.activations[k] for p in previews]
        assert all(b >= a - 1e-4 for a, b in itertools.pairwise(values))


def test_box_constrained_optimum_of_a_linear_unit_is_its_weight_signs():
    net = Linear()
    r = Renderer(loaded_of(net, 8), "unit", CPU)
    final = list(r.render([1], tiny_preset(lr=0.05, steps=40), seed=1))[-1]
    best = (net.unit.weight[1].detach() > 0).float()  # x = 1 where w > 0, 0 where w < 0
    optimum = float((net.unit.weight[1].detach() * best).sum() + net.unit.bias[1].detach())
    assert final.activations[0] == pytest.approx(optimum, rel=0.01)


class Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.b = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.ReLU())
        self.above = Counting()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.above(self.b(self.a(x))).mean((2, 3))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_raises_the_objective_in_expectation(name):
    net = Conv()
    preset = get_preset(name).with_overrides(steps=39, size=20)
    preset = dataclasses.replace(preset, preview_every=3)
    progress = with_images(render_units(loaded_of(net, 20), "b", [0, 1, 2], preset, seed=0))
    values = np.stack([p.activations for p in progress[:-1]]).mean(1)  # (previews,)
    windows = values.reshape(3, 4).mean(1)  # means over thirds of the run
    assert windows[0] < windows[1] < windows[2]
    x0 = torch.full((1, 3, 20, 20), 0.5)
    gray = Renderer(loaded_of(net, 20), "b", CPU).measure(x0.expand(3, -1, -1, -1), [0, 1, 2])
    gain = progress[-1].activations - gray
    assert np.all(gain > 0) and gain.sum() > 0.1
    assert progress[-1].final and progress[-1].images.shape == (3, 20, 20, 3)


def test_same_seed_same_images_other_seed_other_images():
    loaded = loaded_of(Conv(), 16)
    preset = get_preset("fast").with_overrides(steps=8, size=16)
    a = list(render_units(loaded, "b", [0, 3], preset, seed=4))[-1]
    b = list(render_units(loaded, "b", [0, 3], preset, seed=4))[-1]
    c = list(render_units(loaded, "b", [0, 3], preset, seed=5))[-1]
    assert np.array_equal(a.images, b.images) and np.array_equal(a.activations, b.activations)
    assert not np.array_equal(a.images, c.images)
    assert image_seed(4, 0) != image_seed(4, 3) != image_seed(5, 3)


def test_cancel_stops_within_one_step():
    loaded = loaded_of(Conv(), 16)
    cancel = threading.Event()
    preset = dataclasses.replace(get_preset("fast").with_overrides(steps=50, size=16),
                                 preview_every=5)
    Counting.calls = 0
    seen: list = []

    def cancel_at_the_first_preview(p) -> None:
        seen.append(p)
        if p.images is not None:
            cancel.set()

    with pytest.raises(Cancelled):
        run_job(render_units(loaded, "b", [0, 1], preset), cancel_at_the_first_preview, cancel)
    assert [p.step for p in seen] == [1, 2, 3, 4, 5]  # no more steps, no final
    assert not any(p.final for p in seen)
    assert Counting.calls == 0  # truncated: `above` never ran

    # set from another thread mid-run: at most the step in flight finishes
    steps_run: list[int] = []

    class Slow(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            steps_run.append(1)
            if len(steps_run) == 7:
                threading.Timer(0.0, cancel.set).start()
                threading.Event().wait(0.05)  # the step in flight goes on meanwhile
            return x

    net = Conv()
    net.b.append(Slow())
    cancel.clear()
    out: list = []
    with pytest.raises(Cancelled):
        run_job(render_units(loaded_of(net, 16), "b", [0], preset), out.append, cancel)
    assert len(steps_run) <= 8 and not any(p.final for p in out)


def test_cache_hit_skips_the_work(tmp_path):
    loaded = loaded_of(Linear(), 8)
    preset = tiny_preset(steps=20)
    first = list(render_units(loaded, "unit", [0, 1], preset, cache_root=tmp_path))[-1]
    assert first.cached == (False, False)
    Counting.calls = 0  # counts forward passes through the net's first layer
    seen = list(render_units(loaded, "unit", [1, 0], preset, cache_root=tmp_path))
    assert Counting.calls == 0
    assert len(seen) == 1 and seen[0].final and seen[0].cached == (True, True)
    assert np.array_equal(seen[0].images[0], first.images[1])
    assert seen[0].activations[1] == pytest.approx(first.activations[0])
    hit = cached_unit(loaded, tmp_path, "unit", 1, preset)
    assert hit is not None and np.array_equal(hit[0], first.images[1])
    assert cached_unit(loaded, tmp_path, "unit", 1, preset, seed=9) is None
    files = sorted(p.name for p in tmp_path.rglob("unit*") if p.is_file())
    assert files == ["unit00000.json", "unit00000.png", "unit00001.json", "unit00001.png"]
    doc = json.loads(next(tmp_path.rglob("unit00001.json")).read_text())
    assert doc["activation"] == pytest.approx(float(first.activations[1]))


def test_a_preset_whose_recipe_changed_is_rendered_anew(tmp_path):
    loaded = loaded_of(Linear(), 8)
    preset = tiny_preset(steps=20)
    list(render_units(loaded, "unit", [0], preset, cache_root=tmp_path))
    assert cached_unit(loaded, tmp_path, "unit", 0, preset) is not None
    # same name, steps and size, another learning rate: not the cached image's recipe
    changed = dataclasses.replace(preset, lr=preset.lr * 2)
    assert cached_unit(loaded, tmp_path, "unit", 0, changed) is None
    out = list(render_units(loaded, "unit", [0], changed, cache_root=tmp_path))[-1]
    assert out.cached == (False,)
    # the preview rate does not shape the image: still a hit
    assert cached_unit(loaded, tmp_path, "unit", 0,
                       dataclasses.replace(preset, preview_every=3)) is not None


def test_cache_miss_renders_only_the_missing_units(tmp_path):
    loaded = loaded_of(Conv(), 16)
    preset = get_preset("fast").with_overrides(steps=6, size=16)
    list(render_units(loaded, "b", [2], preset, cache_root=tmp_path))
    out = list(render_units(loaded, "b", [1, 2], preset, cache_root=tmp_path))
    assert out[-1].cached == (False, True) and out[-1].final


def test_unknown_preset_and_objective():
    with pytest.raises(PresetError, match="fast"):
        get_preset("deepdream")
    loaded = loaded_of(Conv(), 16)
    with pytest.raises(ValueError, match="objective"):
        next(render_units(loaded, "b", [0], "fast", objective="dream"))


# -- the bundled model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled():
    from app.engine.runtime.models import load_bundled

    return load_bundled(CPU)


def real_photos(pre: Preprocess) -> torch.Tensor:
    """assets/samples/*.jpg and skimage's color photos, center-cropped as the model sees them."""
    from photos import ASSETS
    from skimage import data

    from app.capture.images import read_image
    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch

    images = [read_image(p, 80_000_000) for p in sorted((ASSETS / "samples").glob("*.jpg"))]
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                 "immunohistochemistry", "cat", "camera", "coins", "brick", "grass", "gravel"):
        img = getattr(data, name)()
        images.append(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3])
    raw = dataclasses.replace(pre, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert len(images) >= 15
    return prepare_batch([frame_to_tensor(i, CPU) for i in images], raw)


@pytest.mark.slow
def test_preferred_images_beat_the_best_real_photo(bundled):
    layer, units = "_blocks.8", [0, 5, 11]  # a middle block of EfficientNet-Lite0
    preset = get_preset("fast").with_overrides(steps=32, size=96)
    final = list(render_units(bundled, layer, units, preset, seed=0))[-1]
    renderer = Renderer(bundled, layer, CPU)
    photos = real_photos(bundled.preprocess)
    best = np.stack([renderer.measure(photos, [u] * len(photos)) for u in units]).max(1)
    assert np.all(final.activations > best), (final.activations, best)
    # structured, not pixel noise: neighbouring pixels differ far less than in noise
    img = torch.from_numpy(final.images).permute(0, 3, 1, 2).float() / 255
    noise = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    assert float(reg.total_variation(img).max()) < 0.5 * float(reg.total_variation(noise)[0])


@pytest.mark.slow
def test_render_command_writes_pngs_and_json(tmp_path, capsys):
    from app.capture.images import read_image
    from app.cli import main

    settings = tmp_path / "s.toml"
    settings.write_text(f"[cache]\ndir = '{tmp_path / 'cache'}'\n")
    argv = ["render", "--layer", "_blocks.4", "--units", "1,3", "--steps", "4", "--size", "32",
            "--out", str(tmp_path / "out"), "--settings", str(settings), "--json",
            "--sheet", str(tmp_path / "sheet.png")]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [u["unit"] for u in doc["units"]] == [1, 3] and doc["preset"] == "fast"
    sheet = read_image(tmp_path / "sheet.png", 10_000_000)
    for row in doc["units"]:
        unit_png = read_image(tmp_path / "out" / f"_blocks.4_unit{row['unit']:04d}.png",
                              10_000_000)
        assert unit_png.shape == (32, 32, 3)
        assert row["activation"] > 0 and "best_dataset_activation" in row
        # the sheet holds each unit's image as written
        found = any(np.array_equal(sheet[y : y + 32, x : x + 32], unit_png)
                    for y in range(sheet.shape[0] - 31) for x in range(0, sheet.shape[1] - 31))
        assert found, row["unit"]
    assert main(argv) == 0  # second time from the cache
    assert all(u["cached"] for u in json.loads(capsys.readouterr().out)["units"])
    assert main(["render", "--layer", "_blocks.4", "--units", "0-99",
                 "--settings", str(settings)]) == 2
    assert "out of range" in capsys.readouterr().err


def test_preferred_grid_job_lays_out_the_cached_images(tmp_path):
    import cv2

    from app.core.messages import PreferredGrid
    from app.core.requests import PreferredGridRequest
    from app.core.settings import CacheSettings, RenderSettings, Settings
    from app.engine.runtime.cache import cache_root
    from app.engine.workflows.preferred_grid import PREFERRED_TILE, UNRENDERED
    from app.session.jobs import JobContext, drain, make_job

    settings = Settings(cache=CacheSettings(dir=str(tmp_path)),
                        render=RenderSettings(preset="fast", steps=4, size=32))
    loaded = loaded_of(Conv(), 16)
    root = cache_root(settings.cache.dir)
    final = list(render_units(loaded, "b", [0, 2], "fast", steps=4, size=32,
                              cache_root=root))[-1]  # units 1 and 3 never rendered
    job = make_job(JobContext(settings, loaded, {"b": 4}), PreferredGridRequest("b", 1.0))
    assert job is not None
    _, outcome = drain(job)
    grid, text = outcome.result, outcome.text
    assert isinstance(grid, PreferredGrid) and grid.layer == "b" and grid.rendered == (0, 2)
    assert text == "2 of 4 preferred images of b"
    g = grid.geometry
    assert (g.channels, g.tile_h, g.tile_w) == (4, PREFERRED_TILE, PREFERRED_TILE)
    for i, unit in enumerate((0, 2)):
        y, x = g.tile_origin(unit)
        want = cv2.resize(final.images[i], (PREFERRED_TILE, PREFERRED_TILE),
                          interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(grid.image[y : y + PREFERRED_TILE, x : x + PREFERRED_TILE],
                                      want)
    for unit in (1, 3):
        y, x = g.tile_origin(unit)
        assert (grid.image[y : y + PREFERRED_TILE, x : x + PREFERRED_TILE] == UNRENDERED).all()
