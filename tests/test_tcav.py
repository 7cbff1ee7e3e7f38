"""TCAV with known answers: a model built to depend on a planted cue (a red patch decides its
label) gets a high, significant score for the red-patch concept, a control trained on the
same images with labels independent of the patch does not; the mean-difference CAV against
its formula; the t-test against scipy; the CAV cache; `deepvis tcav` on real photos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy import special, stats
from torch import nn

from app.core.jobs import run_job
from app.engine.analyses.tcav import (
    TcavError,
    TcavResult,
    fit_direction,
    incomplete_beta,
    run_tcav,
    split,
    t_test,
    train_cav,
)
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import Preprocess

SIZE = 32
PRE = Preprocess(size=SIZE, crop_fraction=1.0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions: on a shared CPU, torch's thread pool costs more than it gives."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- the planted cue ------------------------------------------------------------------------


def stripes(rng: np.random.Generator, vertical: bool) -> np.ndarray:
    """A gray SIZE × SIZE image of noisy stripes, (H, W, 3) uint8."""
    period = rng.uniform(5, 9)
    t = np.arange(SIZE) * 2 * np.pi / period + rng.uniform(0, 2 * np.pi)
    wave = np.sin(t)[None, :] if vertical else np.sin(t)[:, None]
    gray = 128 + 60 * np.broadcast_to(wave, (SIZE, SIZE)) + rng.normal(0, 12, (SIZE, SIZE))
    return np.repeat(np.clip(gray, 0, 255)[..., None], 3, axis=2).astype(np.uint8)


def with_patch(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """The cue: a 7 × 7 red square somewhere in the image."""
    out = img.copy()
    y, x = rng.integers(0, SIZE - 7, 2)
    out[y:y + 7, x:x + 7] = (220, 30, 30)
    return out


def images(rng: np.random.Generator, n: int, patch: bool | None, vertical: bool | None
           ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """n images and their (patch, vertical) labels; None: drawn at random."""
    out, has, vert = [], [], []
    for _ in range(n):
        v = bool(rng.integers(2)) if vertical is None else vertical
        p = bool(rng.integers(2)) if patch is None else patch
        img = stripes(rng, v)
        out.append(with_patch(rng, img) if p else img)
        has.append(p)
        vert.append(v)
    return out, np.array(has), np.array(vert)


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Two logits ±z/2 of one decision value z: a class's logit grows exactly where the
        decision moves towards it (two free logits could both grow along any direction)."""
        z = self.fc(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x))))).flatten(1))
        return torch.cat([-z, z], 1) / 2


def to_input(batch: list[np.ndarray]) -> torch.Tensor:
    """What `prepare_batch` makes of these images with `PRE` (crop 1, no resize)."""
    x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255
    return (x - 0.5) / 0.25


def trained(x: torch.Tensor, y: np.ndarray, seed: int, names: tuple[str, str]) -> LoadedModel:
    torch.manual_seed(seed)
    net = TinyNet()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    target = torch.as_tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(12):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), target[idx]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(x).argmax(1) == target).float().mean())
    assert acc > 0.95, f"the {names[1]!r} model did not learn its task ({acc:.2f})"
    return LoadedModel(name=f"tiny-{names[1]}", module=net, preprocess=PRE,
                       class_names=names, device=torch.device("cpu"))


def write(folder: Path, imgs: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for i, img in enumerate(imgs):
        assert cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    before = torch.get_num_threads()  # set up before the function-scoped `one_thread`
    torch.set_num_threads(1)
    try:
        return make_planted(tmp_path_factory)
    finally:
        torch.set_num_threads(before)


def make_planted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    rng = np.random.default_rng(0)
    train, has, vert = images(rng, 768, None, None)
    x = to_input(train)
    cued = trained(x, has.astype(int), 0, ("plain", "patch"))
    control = trained(x, vert.astype(int), 0, ("horizontal", "vertical"))
    root = tmp_path_factory.mktemp("planted")
    concept = write(root / "concept", images(rng, 24, True, None)[0])
    random = write(root / "random", images(rng, 64, False, None)[0])
    # the class's examples: what each model calls class 1, the patch half the time for
    # the control (independent of its label)
    cued_examples = write(root / "patch", images(rng, 32, True, None)[0])
    control_examples = write(root / "vertical", images(rng, 32, None, True)[0])
    return {"cued": cued, "control": control, "concept": concept, "random": random,
            "cued_examples": cued_examples, "control_examples": control_examples,
            "root": root}


def tcav(planted: dict, which: str, method: str = "logistic", layers=("relu1", "conv2"),
         runs: int = 20, out: str = "cavs") -> TcavResult:
    return run_job(run_tcav(
        planted[which], planted["concept"], [planted["random"]],
        planted[f"{which}_examples"], 1, list(layers), runs=runs, method=method,
        out=planted["root"] / f"{out}-{which}-{method}"))


@pytest.mark.parametrize("method", ["logistic", "mean"])
def test_a_model_built_on_the_cue_depends_on_it_and_a_control_does_not(planted, method):
    cued = tcav(planted, "cued", method)
    control = tcav(planted, "control", method)
    for layer in cued.layers:
        # a red patch is plain to see at both layers: the CAV separates it on held-out images
        assert layer.cav_accuracy >= 0.9, (method, layer)
        assert len(layer.scores) == len(layer.random_scores) == 20
        # the patch makes the "patch" logit grow for (nearly) every example, in every run
        assert min(layer.scores) >= 0.9, (method, layer)
        assert layer.significant and layer.p_value < 0.05 / 2, (method, layer)
    for layer in control.layers:
        assert not layer.significant, (method, layer)


def test_cavs_are_cached_and_reused(planted):
    first = tcav(planted, "cued", layers=("conv2",), runs=3, out="cache")
    assert first.cached_cavs == 0
    again = tcav(planted, "cued", layers=("conv2",), runs=3, out="cache")
    assert again.cached_cavs == 2 * 3  # a concept CAV and a random one per run
    assert again.layers[0].scores == first.layers[0].scores
    assert np.array_equal(again.layers[0].cavs, first.layers[0].cavs)
    stored = sorted((planted["root"] / "cache-cued-logistic" / "conv2").iterdir())
    assert len(stored) == 2 * 2 * 3 and {p.suffix for p in stored} == {".npz", ".json"}
    for p in stored:
        if p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:  # a pickle would raise here
                assert z["cav"].shape == (16,)
    # a file changed on one side: its CAVs are new, not stale
    extra = planted["root"] / "concept-more"
    write(extra, images(np.random.default_rng(5), 24, True, None)[0])
    other = run_job(run_tcav(planted["cued"], extra, [planted["random"]],
                             planted["cued_examples"], 1, ["conv2"], runs=3,
                             out=planted["root"] / "cache-cued-logistic"))
    assert other.cached_cavs == 3  # only the random-vs-random CAVs are the same


def test_the_mean_difference_cav_is_the_normalized_difference_of_the_means():
    rng = np.random.default_rng(1)
    pos = rng.normal(1.0, 1.0, (40, 12)).astype(np.float32)
    neg = rng.normal(0.0, 2.0, (50, 12)).astype(np.float32)
    cav, threshold = fit_direction(torch.from_numpy(pos), torch.from_numpy(neg), "mean")
    diff = pos.astype(np.float64).mean(0) - neg.astype(np.float64).mean(0)
    expected = diff / np.linalg.norm(diff)
    assert np.allclose(cav.numpy(), expected, atol=1e-6)
    middle = (pos.astype(np.float64).mean(0) + neg.astype(np.float64).mean(0)) / 2
    assert float(threshold) == pytest.approx(float(middle @ expected), abs=1e-5)
    # trained on a split: the formula on the training rows of that split
    result = train_cav(torch.from_numpy(pos), torch.from_numpy(neg), "mean", seed=3)
    p_train, p_test, n_train, n_test = split(40, 50, 3)
    diff = pos[p_train].astype(np.float64).mean(0) - neg[n_train].astype(np.float64).mean(0)
    assert np.allclose(result.vector, diff / np.linalg.norm(diff), atol=1e-6)
    assert len(p_test) + len(p_train) == 40 and not set(p_test) & set(p_train)
    assert len(n_test) == round(50 / 3)


def test_the_logistic_cav_finds_a_planted_direction_and_is_deterministic():
    rng = np.random.default_rng(2)
    direction = rng.normal(size=32)
    direction /= np.linalg.norm(direction)
    base = rng.normal(size=(200, 32)) * 0.3 + 5.0
    pos = base[:100] + 1.0 * direction
    neg = base[100:] - 1.0 * direction
    a = train_cav(torch.tensor(pos, dtype=torch.float32), torch.tensor(neg, dtype=torch.float32),
                  "logistic", seed=0)
    b = train_cav(torch.tensor(pos, dtype=torch.float32), torch.tensor(neg, dtype=torch.float32),
                  "logistic", seed=0)
    assert np.array_equal(a.vector, b.vector)
    assert float(a.vector @ direction) > 0.9
    assert a.accuracy == 1.0


@pytest.mark.parametrize("equal_var", [True, False])
def test_the_t_test_equals_scipys(equal_var):
    rng = np.random.default_rng(4)
    for n1, n2, shift in ((10, 10, 0.0), (10, 10, 0.4), (5, 12, 1.5), (3, 2, 0.1),
                          (30, 25, 0.05), (8, 8, 6.0)):
        a = rng.normal(0.5, 0.1, n1)
        b = rng.normal(0.5 + shift * 0.1, 0.2, n2)
        mine = t_test(list(a), list(b), equal_var=equal_var)
        ref = stats.ttest_ind(a, b, equal_var=equal_var)
        assert mine.statistic == pytest.approx(float(ref.statistic), rel=1e-10)
        assert mine.p_value == pytest.approx(float(ref.pvalue), rel=1e-8, abs=1e-300)
    # constant samples, where scipy answers NaN (see `stats`)
    assert t_test([0.5, 0.5], [0.5, 0.5, 0.5]).p_value == 1.0
    assert t_test([1.0, 1.0], [0.5, 0.5]).p_value == 0.0
    with pytest.raises(ValueError):
        t_test([0.1], [0.2, 0.3])


def test_the_incomplete_beta_equals_scipys():
    for a, b in ((0.5, 0.5), (1.0, 0.5), (9.0, 0.5), (50.0, 0.5), (2.5, 7.0), (100.0, 100.0)):
        for x in (1e-8, 0.01, 0.3, 0.5, 0.77, 0.999, 1 - 1e-9):
            assert incomplete_beta(a, b, x) == pytest.approx(
                float(special.betainc(a, b, x)), rel=1e-9, abs=1e-300), (a, b, x)
    assert incomplete_beta(2.0, 3.0, 0.0) == 0.0 and incomplete_beta(2.0, 3.0, 1.0) == 1.0
    assert math.isclose(incomplete_beta(1.0, 1.0, 0.25), 0.25)


def test_bad_input_is_one_line(planted, tmp_path):
    (tmp_path / "empty").mkdir()
    good = dict(concept=planted["concept"], randoms=[planted["random"]],
                examples=planted["cued_examples"], target=1, layers=["conv2"])
    for change, fragment in (
        ({"concept": tmp_path / "missing"}, "concept folder not found"),
        ({"randoms": [tmp_path / "empty"]}, "no images in the random folder"),
        ({"target": "zebra"}, "unknown class 'zebra'"),
        ({"target": 7}, "class 7 is out of range"),
        ({"layers": ["conv9"]}, "no layer named 'conv9'"),
        ({"layers": ["logits"]}, "no layer named 'logits'"),
    ):
        args = {**good, **change}
        with pytest.raises(TcavError, match=fragment) as err:
            run_job(run_tcav(planted["cued"], args["concept"], args["randoms"],
                             args["examples"], args["target"], args["layers"], runs=2,
                             out=tmp_path / "o"))
        assert "\n" not in str(err.value)
    with pytest.raises(TcavError, match="two runs"):
        run_job(run_tcav(planted["cued"], planted["concept"], [planted["random"]],
                         planted["cued_examples"], "patch", ["conv2"], runs=1))


# -- the command, on the bundled model and real photos -----------------------------------------


def test_cli_on_real_photos_with_the_bundled_model(tmp_path, capsys):
    from skimage import data as skdata

    import app.cli as cli

    folders = {"concept": ("chelsea", "cat", "coffee"), "random": ("rocket", "camera", "moon",
               "coins", "horse", "page"), "examples": ("astronaut", "brick", "grass")}
    for folder, names in folders.items():
        (tmp_path / folder).mkdir()
        for name in names:
            img = getattr(skdata, name)()
            if img.dtype == bool:
                img = img.astype(np.uint8) * 255
            rgb = np.dstack([img] * 3) if img.ndim == 2 else img[..., :3]
            assert cv2.imwrite(str(tmp_path / folder / f"{name}.png"),
                               cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    argv = ["tcav", "--concept", str(tmp_path / "concept"), "--random",
            str(tmp_path / "random"), "--examples", str(tmp_path / "examples"),
            "--class", "tabby", "--layers", "_blocks.4", "_blocks.8", "--runs", "3",
            "--device", "cpu", "--out", str(tmp_path / "cavs"), "--json"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["class"] == 281 and doc["class_name"] == "tabby" and doc["examples"] == 3
    assert [s["layer"] for s in doc["layers"]] == ["_blocks.4", "_blocks.8"]
    for s in doc["layers"]:
        assert {"layer", "cav_accuracy", "score", "scores", "random_scores", "p_value",
                "significant"} <= s.keys()
        assert len(s["scores"]) == len(s["random_scores"]) == 3
        # three examples: a score is a count of them over 3
        assert all(round(v * 3) == pytest.approx(v * 3) for v in s["scores"])
        assert s["score"] == pytest.approx(np.mean(s["scores"]))
        assert 0 <= s["p_value"] <= 1
        assert s["significant"] == (s["p_value"] < 0.05 / 2)
    cavs = sorted((tmp_path / "cavs" / "_blocks.8").glob("*.npz"))
    assert len(cavs) == 6
    assert np.load(cavs[0], allow_pickle=False)["cav"].shape == (112,)

    assert cli.main([*argv[:-1], "--class", "281"]) == 0  # the table for people, cached
    text = capsys.readouterr().out
    assert "_blocks.8" in text and "p-value" in text and "12 CAVs cached" in text

    (tmp_path / "empty").mkdir()
    base = argv[:-1]
    for bad, fragment in (
        ([*base, "--concept", str(tmp_path / "missing")], "folder not found"),
        ([*base, "--random", str(tmp_path / "empty")], "no images in the random folder"),
        ([*base, "--class", "not-a-class"], "unknown class 'not-a-class'"),
        ([*base, "--layers", "_blocks.99"], "no layer named '_blocks.99'"),
        ([*base, "--runs", "1"], "--runs must be 2"),
        ([*base, "--method", "svm"], "--method"),
        (["tcav", "--concept", str(tmp_path / "concept")], "required"),
    ):
        try:
            status = cli.main(bad)
        except SystemExit as exit_:  # argparse's own errors: one line, status 2 too
            status = exit_.code
        assert status == 2, bad
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err, (bad, err)


def test_random_sets_cycle_the_folders_or_split_one_in_two():
    from app.engine.analyses.tcav.job import _plan

    one = _plan(5, [14], runs=4, seed=0)
    for first, second in one:
        # a single folder: two disjoint subsets of it, each as large as the concept folder
        assert first.folder == second.folder == 1
        assert len(first.positions) == len(second.positions) == 5
        assert not set(first.positions) & set(second.positions)
        assert set(first.positions) | set(second.positions) <= set(range(14))
    assert len({pair[0].positions for pair in one}) > 1  # other subsets run by run
    small = _plan(5, [6], runs=2, seed=0)
    assert all(len(s.positions) == 3 for pair in small for s in pair)  # half of six
    three = _plan(4, [10, 3, 8], runs=5, seed=0)
    assert [p[0].folder for p in three] == [1, 2, 3, 1, 2]  # run i: folder i mod 3
    assert [p[1].folder for p in three] == [2, 3, 1, 2, 3]  # the null: the next folder
    assert [len(p[0].positions) for p in three] == [4, 3, 4, 4, 3]
    assert _plan(4, [10, 3, 8], runs=5, seed=0) == three  # seeded


def test_a_torch_export_program_gives_the_models_answer(planted, tmp_path):
    """`.pt2` programs run through the same hooks: the same CAVs and scores as the model."""
    from dataclasses import replace

    from torch.export import Dim

    from app.core.settings import ModelSettings
    from app.engine.runtime.models import load_model

    path = tmp_path / "cued.pt2"
    program = torch.export.export(planted["cued"].module, (torch.zeros(2, 3, SIZE, SIZE),),
                                  dynamic_shapes=({0: Dim.AUTO},))
    torch.export.save(program, str(path))
    exported = replace(load_model(str(path), torch.device("cpu"), ModelSettings()),
                       preprocess=PRE, class_names=planted["cued"].class_names)
    results = [run_job(run_tcav(m, planted["concept"], [planted["random"]],
                                planted["cued_examples"], "patch", ["relu1", "conv2"],
                                runs=3, method="mean", out=tmp_path / f"cavs{i}"))
               for i, m in enumerate((planted["cued"], exported))]
    for a, b in zip(results[0].layers, results[1].layers, strict=True):
        np.testing.assert_allclose(a.cavs, b.cavs, atol=1e-5)
        assert a.scores == b.scores and a.random_scores == b.random_scores
        assert a.cav_accuracies == b.cav_accuracies


def test_the_tested_concept_becomes_a_unit_whose_map_finds_the_cue(planted, tmp_path):
    """Each layer's CAV is stored as a one-unit direction layer `<layer>@cav-<folder>`:
    the runs' unit CAVs averaged and renormalized; its map (CAV · activation per position)
    peaks where the red patch is, on an image it has never seen."""
    from app.engine.runtime.cache import model_key
    from app.engine.runtime.directions import DirectionLayer, direction_sets

    result = run_job(run_tcav(planted["cued"], planted["concept"], [planted["random"]],
                              planted["cued_examples"], 1, ["conv2"], runs=5,
                              cache_dir=str(tmp_path)))
    name = "conv2@cav-concept"
    assert [d.name for d in result.directions] == [name]
    stored = direction_sets(tmp_path, model_key(planted["cued"]))
    assert list(stored) == [name]
    unit = stored[name]
    assert (unit.kind, unit.source, unit.k, unit.names) == ("linear", "conv2", 1, ("concept",))
    mean = result.layers[0].cavs.astype(np.float64).mean(0)
    np.testing.assert_allclose(unit.directions[0], mean / np.linalg.norm(mean), rtol=1e-5,
                               atol=1e-6)
    assert unit.meta["score"] == pytest.approx(result.layers[0].score)
    # the known answer: a patch at rows 20-26, columns 4-10 of a new image
    img = stripes(np.random.default_rng(11), vertical=True)
    img[20:27, 4:11] = (220, 30, 30)
    net = planted["cued"].module
    with torch.no_grad():
        acts = net.conv2(net.relu1(net.conv1(to_input([img]))))  # (1, 16, 16, 16): stride 2
    codes = DirectionLayer(unit, torch.device("cpu")).codes(acts)[0, 0]
    y, x = divmod(int(codes.argmax()), codes.shape[1])
    assert 9 <= y <= 14 and 1 <= x <= 6, (y, x)  # inside the patch (3 × 3 kernel's reach)
    # asked again: the same folder, rewritten, still one layer of that name
    run_job(run_tcav(planted["cued"], planted["concept"], [planted["random"]],
                     planted["cued_examples"], 1, ["conv2"], runs=5, cache_dir=str(tmp_path)))
    assert list(direction_sets(tmp_path, model_key(planted["cued"]))) == [name]
