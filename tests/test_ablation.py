"""Deleting units: live ablation hooks, running means, selectivity, ablation curves, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from app.cli import main
from app.core.jobs import run_job
from app.core.selectivity import (
    class_means,
    class_selectivity,
    deletion_counts,
    deletion_orders,
    selectivity_index,
)
from app.engine.analyses.ablation.curves import CurveResult, ablation_curves
from app.engine.analyses.ablation.cut import CutRunner, NaiveRunner, cut_at, make_runner
from app.engine.analyses.ablation.datasets import Dataset, find_dataset, match_class
from app.engine.analyses.ablation.deletion import (
    Ablation,
    AblationError,
    ForkError,
    RunningChannelMeans,
    parse_ablation,
    parse_ablations,
)
from app.engine.runtime.recorder import ActivationRecorder
from tests.tiny_nets import SharedAct, TinyNet, tiny_input

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "assets" / "samples"


class Known(nn.Module):
    """conv 1×1 (1→3, weights 1, 2, 3) → ReLU → mean pool → fc: logits = [u0 + u2, u1 + u2]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


def ones(value: float = 1.0) -> torch.Tensor:
    return torch.full((1, 1, 2, 2), value)


# -- live ablation -------------------------------------------------------------------------

@torch.no_grad()
def test_zero_ablation_gives_the_expected_logits_and_restoring_the_intact_ones():
    net = Known().eval()
    intact = net(ones())
    assert intact.tolist() == [[4.0, 5.0]]  # units [1, 2, 3]
    with Ablation(net, {"relu": [2]}) as abl:
        assert net(ones()).tolist() == [[1.0, 2.0]]
        abl.set("relu", [0, 1])
        assert net(ones()).tolist() == [[3.0, 3.0]]
        abl.add("relu", 2)
        assert net(ones()).tolist() == [[0.0, 0.0]]
        with abl.paused():
            assert torch.equal(net(ones()), intact)
        assert net(ones()).tolist() == [[0.0, 0.0]]
        abl.clear()
        assert torch.equal(net(ones()), intact)
        abl.add("conv", 1)  # before the ReLU: unit 1 = 0 → [1 + 3, 0 + 3]
        assert net(ones()).tolist() == [[4.0, 3.0]]
        assert abl.units == {"conv": (1,)}
    assert torch.equal(net(ones()), intact)  # hooks off: exactly the intact network
    assert not net.relu._forward_hooks and not net._forward_pre_hooks


@torch.no_grad()
def test_mean_ablation_uses_the_running_means_of_intact_outputs():
    net = Known().eval()
    means = RunningChannelMeans()
    with Ablation(net, {}, mode="mean", means=means) as abl:
        abl.watch("relu")  # gather statistics before anything is deleted
        net(ones(1.0))
        net(ones(3.0))  # unit means: [2, 4, 6]
        assert means.count("relu") == 2
        assert means.mean("relu").tolist() == [2.0, 4.0, 6.0]
        abl.set("relu", [2])
        # this frame's intact unit 2 (3.0) joins the mean first: (3 + 9 + 3) / 3 = 5
        assert net(ones(1.0)).tolist() == [[1.0 + 5.0, 2.0 + 5.0]]
        # the statistics saw the intact 3.0, never the substituted value
        assert means.mean("relu").tolist() == pytest.approx([5.0 / 3, 10.0 / 3, 5.0])
    fixed = {"relu": torch.tensor([7.0, 8.0, 9.0])}
    with Ablation(net, {"relu": [0]}, mode="mean", means=fixed):
        assert net(ones(1.0)).tolist() == [[7.0 + 3.0, 2.0 + 3.0]]


@torch.no_grad()
def test_a_forked_pass_gives_intact_and_ablated_logits_at_once():
    net = Known().eval()
    with Ablation(net, {"relu": [2]}) as abl:
        with abl.forked():
            both = net(ones())
        assert both.tolist() == [[4.0, 5.0], [1.0, 2.0]]  # [intact; unit 2 deleted]
        assert net(ones()).tolist() == [[1.0, 2.0]]  # outside `forked`: one ablated row
        abl.set("relu", [])
        with abl.forked():
            assert net(ones()).tolist() == [[4.0, 5.0]]  # nothing deleted: no fork


@torch.no_grad()
def test_forked_mean_ablation_keeps_intact_statistics_above_the_fork():
    class Two(nn.Module):  # relu1 deleted first; relu2's means must see intact rows only
        def __init__(self) -> None:
            super().__init__()
            self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu2(self.relu1(x) * 2)

    net = Two().eval()
    x = torch.tensor([1.0, 2.0]).view(1, 2, 1, 1)
    means = RunningChannelMeans()
    with Ablation(net, {"relu1": [0]}, mode="mean", means=means) as abl:
        abl.watch("relu2")
        means.update("relu1", torch.tensor([5.0, 0.0]).view(1, 2, 1, 1))
        with abl.forked():
            both = net(x)
        assert both.flatten(1).tolist() == [[2.0, 4.0], [(1.0 + 5.0) / 2 * 2, 4.0]]
        assert means.mean("relu2").tolist() == [2.0, 4.0]  # from the intact row alone


@torch.no_grad()
def test_a_deletion_on_a_branch_the_fork_does_not_reach_is_refused():
    class Branches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.ReLU(), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x)  # b runs on the un-forked batch

    net = Branches().eval()
    x = torch.ones(1, 2, 1, 1)
    abl = Ablation(net, {"a": [0], "b": [1]})
    with abl, abl.forked(), pytest.raises(ForkError, match="b"):
        net(x)


def test_running_means_with_momentum_follow_the_scene():
    m = RunningChannelMeans(momentum=0.5)
    m.update("l", torch.zeros(1, 2, 3, 3))
    m.update("l", torch.ones(2, 2, 3, 3) * 4)  # two frames: 0 → 2 → 3
    assert m.mean("l").tolist() == [3.0, 3.0]
    assert m.mean("other") is None
    m.reset()
    assert m.count("l") == 0


@torch.no_grad()
def test_the_recorder_sees_the_ablated_output_and_reused_modules_are_addressed_by_call():
    net = TinyNet().eval()
    x = tiny_input()
    intact = net(x)
    with ActivationRecorder(net) as rec:
        rec.run(x)
        first, second = rec.activations["shared"].clone(), rec.activations["shared:1"].clone()
        with Ablation(net, {"shared:1": [1]}):
            out = rec.run(x)
            assert torch.equal(rec.activations["shared"], first)  # call 0 untouched
            assert rec.activations["shared:1"][0, 1].abs().max() == 0
            assert torch.equal(rec.activations["shared:1"][0, 0], second[0, 0])
        # fc: logit 1 reads channel 1 only, logit 2 both; channel 1 is gone
        pooled = second.mean((2, 3))[0]
        assert out[0].tolist() == pytest.approx([pooled[0].item(), 0.0, pooled[0].item()])
    assert torch.equal(net(x), intact)


@torch.no_grad()
def test_repeat_calls_are_counted_over_feature_maps_only_as_the_recorder_does():
    net = SharedAct().eval()
    x = torch.randn(1, 3, 9, 9)
    with Ablation(net, {"act:1": [0, 1, 2, 3]}), ActivationRecorder(net) as rec:
        rec.run(x)
        assert float(rec.activations["act:1"].abs().max()) == 0.0  # the second map, all gone
        assert float(rec.activations["act"].abs().max()) > 0.0


def test_ablation_specs_parse_and_name_their_mistakes():
    assert parse_ablation("_blocks.8:0-15") == ("_blocks.8", "0-15")
    assert parse_ablation("layer1.0.relu:1:3") == ("layer1.0.relu:1", "3")
    got = parse_ablations(["a:0-2", "a:5", "b.c:1"], {"a": 8, "b.c": 2})
    assert got == {"a": [0, 1, 2, 5], "b.c": [1]}
    with pytest.raises(AblationError, match="LAYER:UNITS"):
        parse_ablation("a")
    with pytest.raises(AblationError, match="no recordable layer"):
        parse_ablations(["z:1"], {"a": 8})
    with pytest.raises(AblationError, match="out of range"):
        parse_ablations(["a:8"], {"a": 8})
    with pytest.raises(AblationError, match="no layer named"):
        Ablation(Known(), {"nope": [0]})


# -- class selectivity ---------------------------------------------------------------------

def test_selectivity_index_equals_the_formula_on_synthetic_activations():
    rng = np.random.default_rng(0)
    labels = np.repeat([3, 7, 9], 4)  # 3 classes × 4 images
    target = np.array([[1.0, 5.0, 2.0, 0.0],   # class means per unit (rows: classes 3, 7, 9)
                       [3.0, 5.0, 0.0, 0.0],
                       [2.0, 5.0, 0.0, 0.0]])
    noise = rng.normal(size=(12, 4))
    noise -= noise.reshape(3, 4, 4).mean(1).repeat(4, axis=0)  # zero mean per class
    noise[:, 2:] = 0.0  # keep the zero means exactly zero
    acts = target[np.repeat([0, 1, 2], 4)] + 0.1 * noise
    classes, means = class_means(acts, labels)
    assert classes.tolist() == [3, 7, 9]
    np.testing.assert_allclose(means, target, atol=1e-12)
    sel = class_selectivity(acts, labels)
    # unit 0: μmax 3, μ−max (1 + 2) / 2 = 1.5 → 1.5 / 4.5; unit 1: all equal → 0;
    # unit 2: only one class → 1; unit 3: all zero → 0 by definition
    np.testing.assert_allclose(sel.index, [1.5 / 4.5, 0.0, 1.0, 0.0], atol=1e-12)
    assert sel.preferred[0] == 7 and sel.preferred[2] == 3
    assert not sel.shifted.any()


def test_negative_class_means_are_shifted_into_range():
    index, shifted = selectivity_index(np.array([[-1.0, 2.0], [1.0, 4.0], [0.0, 3.0]]))
    # unit 0 shifted by +1: means [0, 2, 1] → (2 - 0.5) / (2 + 0.5)
    assert shifted.tolist() == [True, False]
    np.testing.assert_allclose(index, [1.5 / 2.5, (4 - 2.5) / (4 + 2.5)])
    assert ((index >= 0) & (index <= 1)).all()
    with pytest.raises(ValueError, match="two classes"):
        selectivity_index(np.ones((1, 3)))


def test_deletion_counts_and_orders():
    assert deletion_counts(10, 11) == list(range(11))
    assert deletion_counts(7, 3) == [0, 4, 7]
    orders = deletion_orders(np.array([0.1, 0.9, 0.5, 0.9]), seeds=2)
    assert orders["selectivity_high_to_low"].tolist() == [1, 3, 2, 0]
    assert orders["selectivity_low_to_high"].tolist() == [0, 2, 1, 3]
    assert sorted(orders["random_0"].tolist()) == [0, 1, 2, 3]
    assert orders["random_0"].tolist() != orders["random_1"].tolist()


# -- ablation curves -----------------------------------------------------------------------

class Deep(nn.Module):
    """Stem, a block whose skip crosses a cut at `act` and is added to in place, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.mid = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.top = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, 8, 1)
        self.act2 = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.relu(self.stem(x))
        h = self.act(self.mid(skip))
        skip.add_(self.top(h))  # in place on a value crossing the cut at `act` (fx keeps add_)
        return self.fc(self.act2(self.head(skip)).mean((2, 3)))


def _batches(n: int = 24, seed: int = 0, labeled: bool = True):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, 3, 6, 6, generator=g)
    ys = torch.randint(0, 4, (n,), generator=g)

    def batches():
        for i in range(0, n, 8):
            yield xs[i : i + 8], (ys[i : i + 8] if labeled else None)

    return batches, xs, ys


@torch.no_grad()
def test_the_cut_reproduces_the_network_and_each_level_of_the_naive_loop_exactly():
    torch.manual_seed(0)
    net = Deep().eval()
    _, xs, _ = _batches()
    cut = cut_at(net, "act")
    assert set(cut.live) == {"act", "relu"}  # the skip crosses the cut
    fast, naive = CutRunner(cut), NaiveRunner(net, "act")
    _, _, intact = fast.intact(xs)  # learns that `skip.add_(…)` writes into a kept value
    assert fast.clone, "the in-place write into the kept skip must be detected"
    assert torch.equal(intact, net(xs))
    state = fast.prepare(xs)
    for units in ([], [0], [1, 5, 7], list(range(8))):
        mask = torch.zeros(1, 8, 1, 1, dtype=torch.bool)
        mask[0, units] = True
        a = fast.run(state, mask)
        b = naive.run(xs, mask)
        with Ablation(net, {"act": units}):
            c = net(xs)
        assert torch.equal(a, b) and torch.equal(a, c), units
    assert torch.equal(fast.run(state, torch.zeros(1, 8, 1, 1, dtype=torch.bool)), intact)


@torch.no_grad()
def test_levels_never_see_a_kept_layer_output_that_the_suffix_wrote_into():
    class Doubler(Known):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv(x)
            h.mul_(2.0)  # in place on the cut layer's own output
            return self.fc(self.pool(h).flatten(1))

    net = Doubler().eval()
    fast = CutRunner(cut_at(net, "conv"))
    state, _, intact = fast.intact(ones())
    assert intact.tolist() == [[8.0, 10.0]]
    nothing = torch.zeros(1, 3, 1, 1, dtype=torch.bool)
    for _ in range(2):
        assert fast.run(state, nothing).tolist() == [[8.0, 10.0]]
    assert fast.run(state, ~nothing).tolist() == [[0.0, 0.0]]


def test_curves_fast_path_equals_naive_and_endpoints_hold():
    torch.manual_seed(1)
    net = Deep().eval()
    batches, xs, ys = _batches()
    for layer in ("act", "act2"):
        fast = run_job(ablation_curves(net, batches, layer, total=24, seeds=3, points=5))
        slow = run_job(ablation_curves(net, batches, layer, total=24, seeds=3, points=5,
                                       method="naive"))
        assert fast.method == "cut" and slow.method == "naive"
        assert fast.curves == slow.curves and fast.selectivity == slow.selectivity
        with torch.no_grad():
            intact = net(xs).argmax(1)
        assert fast.intact_accuracy == pytest.approx((intact == ys).double().mean().item())
        for curve in fast.curves.values():
            assert curve[0] == fast.intact_accuracy
    # `act2` is a cut of the graph: deleting all of it leaves one constant answer
    with torch.no_grad(), Ablation(net, {"act2": range(8)}):
        dead = net(xs).argmax(1)
    assert len(set(dead.tolist())) == 1
    for curve in fast.curves.values():
        assert curve[-1] == pytest.approx((dead == ys).double().mean().item())
    doc = fast.to_json()
    assert doc["deleted"] == [0, 2, 4, 6, 8] and doc["fractions"][-1] == 1.0
    assert len(doc["curves"]["random"]["seeds"]) == 3 and len(doc["selectivity"]["index"]) == 8
    assert doc["levels_per_image"] == 3 * 3 + 3 * 2 + 2  # shared 0 % and 100 % levels
    assert json.loads(json.dumps(doc)) == doc
    # what the cache stores reads back to the same result
    assert CurveResult.from_json(json.loads(json.dumps(doc))).to_json() == doc


def test_without_labels_accuracy_is_agreement_with_the_intact_network():
    torch.manual_seed(2)
    net = Deep().eval()
    batches, *_ = _batches(labeled=False)
    res = run_job(ablation_curves(net, batches, "act", total=24, seeds=1, points=3))
    assert not res.labeled and res.intact_accuracy == 1.0
    assert all(c[0] == 1.0 for c in res.curves.values())
    assert res.to_json()["labels"] == "intact_top1"


def test_untraceable_models_fall_back_to_the_naive_loop():
    class Branchy(Known):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
                x = x * 1.0
            return super().forward(x)

    runner, note = make_runner(Branchy().eval(), "relu", probe=ones())
    assert runner.method == "naive" and "naive loop" in note


def test_tracing_a_cut_leaves_other_threads_models_running():
    """torch.fx patches nn.Module.__call__ for every thread while it traces; the live worker
    runs the live model meanwhile and must neither fail nor be traced."""
    import threading

    tracing, live_ran = threading.Event(), threading.Event()

    class Pausing(nn.Module):  # traced through (it contains the cut), so its code runs
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tracing.set()
            live_ran.wait(5.0)
            return self.inner(x)

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Pausing()
            self.head = nn.Conv2d(4, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.block(x))

    cuts: list[object] = []
    tracer = threading.Thread(target=lambda: cuts.append(cut_at(Wrapped().eval(), "block.inner.0")))
    tracer.start()
    try:
        assert tracing.wait(5.0)
        live = TinyNet().eval()  # the "live model", on this thread, mid-trace
        with torch.no_grad():
            out = live(tiny_input())
    finally:
        live_ran.set()
        tracer.join()
    with torch.no_grad():
        assert torch.equal(out, TinyNet().eval()(tiny_input()))
    assert len(cuts) == 1 and cuts[0].live  # the trace itself still worked


def test_class_folders_match_names_and_indices(tmp_path):
    names = ("tench", "tiger cat", "crane", "crane", "Egyptian cat")
    assert match_class("Tiger_Cat", names) == 1 and match_class("tiger-cat", names) == 1
    assert match_class("4", names) == 4 and match_class("5", names) is None
    assert match_class("dog", names) is None
    with pytest.raises(AblationError, match="several classes"):
        match_class("crane", names)
    for folder in ("tiger_cat", "4"):
        (tmp_path / "set" / folder).mkdir(parents=True)
        shutil.copy(SAMPLES / "chelsea.jpg", tmp_path / "set" / folder / "a.jpg")
    ds = find_dataset(tmp_path / "set", names)
    assert ds.labels == (4, 1) and ds.folders == {"tiger_cat": 1, "4": 4}  # sorted paths
    (tmp_path / "set" / "dog").mkdir()
    shutil.copy(SAMPLES / "coffee.jpg", tmp_path / "set" / "dog" / "b.jpg")
    with pytest.raises(AblationError, match="'dog' matches no class"):
        find_dataset(tmp_path / "set", names)
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(SAMPLES / "coffee.jpg", flat / "b.jpg")
    assert find_dataset(flat, names) == Dataset((flat / "b.jpg",), None)


# -- the bundled model on real photos, and the command line --------------------------------

@pytest.fixture(scope="module")
def bundled():
    from app.engine.runtime.device import pick_device
    from app.engine.runtime.models import load_bundled

    return load_bundled(pick_device("cpu"))


def _photos() -> list[np.ndarray]:
    from app.capture.images import read_image
    from tests.photos import chelsea, coffee

    return [read_image(SAMPLES / "astronaut.jpg"), read_image(SAMPLES / "rocket.jpg"),
            chelsea(), coffee()]


@pytest.mark.slow
def test_deleting_an_images_top_units_changes_its_top5(bundled):
    from app.engine.analyses.ablation.predict import predict_ablated
    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch

    layer = "_blocks.15"
    for image in _photos():
        x = prepare_batch([frame_to_tensor(image, bundled.device)], bundled.preprocess)
        with torch.no_grad(), ActivationRecorder(bundled.module, [layer]) as rec:
            rec.run(x)
            strength = rec.activations[layer][0].flatten(1).mean(1)
        top_units = strength.argsort(descending=True)[:32].tolist()  # the top 10 %
        (res,) = predict_ablated(bundled, [image], {layer: top_units})
        before, after = res.intact, res.ablated
        assert res.intact_top1_after < 0.6 * before[0].probability, (before[0], after[0])
        assert [p.index for p in after] != [p.index for p in before]
        # as many of the image's weakest units deleted barely matter: the effect is specific
        weak = strength.argsort()[:32].tolist()
        (calm,) = predict_ablated(bundled, [image], {layer: weak})
        assert calm.intact_top1_after > res.intact_top1_after


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_predict_ablate_json_shows_intact_and_ablated_top5(capsys):
    cat, cup = SAMPLES / "chelsea.jpg", SAMPLES / "coffee.jpg"
    code, out, err = _cli(capsys, "predict", str(cat), str(cup), "--ablate", "_blocks.15:0-99",
                          "--ablate", "_blocks.15:100-319", "--json", "--device", "cpu")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ablate"] == {"_blocks.15": list(range(320))} and doc["ablate_mode"] == "zero"
    for r in doc["results"]:
        assert len(r["top"]) == 5 and len(r["ablated_top"]) == 5
        assert r["intact_top1_probability_after"] < r["top"][0]["probability"]
    assert doc["results"][1]["top"][0]["label"] == "espresso"
    # the whole layer deleted: both images get the same (constant) answer
    assert doc["results"][0]["ablated_top"] == doc["results"][1]["ablated_top"]
    code, out, err = _cli(capsys, "predict", str(cat), "--ablate", "_blocks.8:200")
    assert code == 2 and "out of range" in err and "\n" not in err.strip()


@pytest.mark.slow
def test_ablate_cli_json_on_a_labeled_folder_and_its_cache(capsys, tmp_path):
    data = tmp_path / "data"
    for folder, photo in (("Egyptian Cat", "chelsea.jpg"), ("espresso", "coffee.jpg"),
                          ("657", "rocket.jpg"), ("espresso", "astronaut.jpg"),
                          ("academic_gown", "grace_hopper.jpg")):
        (data / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / photo, data / folder / photo)
    settings = tmp_path / "s.toml"
    settings.write_text(f'[cache]\ndir = "{(tmp_path / "cache").as_posix()}"\n')
    argv = ["ablate", str(data), "--layer", "_head_act", "--seeds", "2", "--points", "3",
            "--settings", str(settings), "--device", "cpu", "--json"]
    code, out, err = _cli(capsys, *argv)
    assert code == 0, err
    doc = json.loads(out)
    assert "intact pass" in err and "ablation pass" in err
    assert doc["labels"] == "folders" and doc["images"] == 5 and doc["units"] == 1280
    assert doc["class_folders"] == {"Egyptian Cat": 285, "espresso": 967, "657": 657,
                                    "academic_gown": 400}
    assert doc["method"] == "cut" and doc["cached"] is False
    assert doc["deleted"] == [0, 640, 1280]
    curves = doc["curves"]
    assert curves["random"]["mean"][0] == doc["intact_accuracy"]
    assert curves["selectivity_high_to_low"][0] == doc["intact_accuracy"]
    assert doc["intact_accuracy"] >= 0.6  # all but the astronaut (no such class) are right
    assert curves["random"]["mean"][-1] <= 0.4  # a constant answer fits at most 2 of 5
    sel = doc["selectivity"]["index"]
    assert len(sel) == 1280 and all(0.0 <= s <= 1.0 for s in sel)
    assert doc["selectivity"]["shifted_units"] == 0  # ReLU6 output: never negative
    cache = Path(doc["cache_file"])
    assert cache.is_file() and cache.parent.name == "ablate"
    assert cache.is_relative_to(tmp_path / "cache")
    code, out, _ = _cli(capsys, *argv)
    again = json.loads(out)
    assert again["cached"] is True and again["curves"] == doc["curves"]
    code, _, err = _cli(capsys, "ablate", str(data), "--layer", "nope", "--settings",
                        str(settings))
    assert code == 2 and "no recordable layer" in err


def test_fork_is_only_used_where_samples_of_a_batch_stay_apart():
    from app.engine.analyses.ablation.deletion import fork_safe

    assert fork_safe(Known().eval())
    assert not fork_safe(Known().train())
    mixing = nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3, track_running_stats=False))
    assert not fork_safe(mixing.eval())  # normalizes over the batch even in eval mode
    assert fork_safe(nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3)).eval())
