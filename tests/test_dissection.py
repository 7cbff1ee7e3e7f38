"""Network dissection: a synthetic Broden dataset and a net of known colour detectors, with
every IoU worked out by hand; the threshold sketch against numpy; resume; bad datasets; the
command line; and the bundled model on real photos with the built-in colour concepts."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from app.core.jobs import Cancelled, run_job
from app.engine.analyses.dissection import (
    COLOUR_NAMES,
    CategorySummary,
    DissectionError,
    DissectionSummary,
    QuantileSketch,
    colour_index,
    dissect,
    find_concepts,
)
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import Preprocess

RED, GREEN, BLUE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0)


class ColourNet(nn.Module):
    """`conv` (1×1, on pixel/255): unit 0 = R − G − B fires on red, unit 1 on green, unit 2
    on blue, unit 3 is dead (all zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(
                [[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [0, 0, 0]]).view(4, 3, 1, 1))
            self.fc.weight.fill_(0.1)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


def colour_net() -> LoadedModel:
    pre = Preprocess(size=8, crop_fraction=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return LoadedModel("colournet", ColourNet().eval(), pre, ("a", "b"), torch.device("cpu"))


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _label_png(path: Path, labels: np.ndarray) -> str:
    bgr = np.zeros((*labels.shape, 3), np.uint8)
    bgr[..., 2], bgr[..., 1] = labels % 256, labels // 256  # label = R + 256·G
    assert cv2.imwrite(str(path), bgr)
    return path.name


def _image(left: tuple, right: tuple, top_bottom: bool = False) -> np.ndarray:
    img = np.zeros((8, 8, 3), np.uint8)
    if top_bottom:
        img[:4], img[4:] = left, right
    else:
        img[:, :4], img[:, 4:] = left, right
    return img


# The dataset, 4 images of 8×8 (masks 8×8, so upsampling is the identity):
#   img0 left half red, right black;  color: red;   object: apple = top-left 4×4 (16 px)
#   img1 top half green, bottom black; color: green; object: leaf = top 3 rows (24 px)
#   img2 all blue;                    color: blue;  scene: beach (image-level)
#   img3 left red, right green;       color: red, green; scene: forest (image-level)
# Labels: 1 red-c, 2 green-c, 3 blue-c (color); 4 apple (object, though also listed under
# color with less coverage); 5 leaf (object); 6 beach, 7 forest (scene).
IMAGES = [_image(RED, BLACK), _image(GREEN, BLACK, top_bottom=True), _image(BLUE, BLUE),
          _image(RED, GREEN)]


def make_broden(root: Path, break_what: str = "") -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    rows = []
    for i, img in enumerate(IMAGES):
        cv2.imwrite(str(images / f"img{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        colour = np.zeros((8, 8), np.int64)
        colour[(img == RED).all(2)] = 1
        colour[(img == GREEN).all(2)] = 2
        colour[(img == BLUE).all(2)] = 3
        cells = {"color": _label_png(images / f"img{i}_color.png", colour), "object": "",
                 "scene": ""}
        if i == 0:
            obj = np.zeros((8, 8), np.int64)
            obj[:4, :4] = 4
            cells["object"] = _label_png(images / "img0_object.png", obj)
        if i == 1:
            obj = np.zeros((8, 8), np.int64)
            obj[:3] = 5
            cells["object"] = _label_png(images / "img1_object.png", obj)
        if i in (2, 3):
            cells["scene"] = str(6 if i == 2 else 7)
        rows.append([f"img{i}.png", "train", 8, 8, 8, 8, cells["color"], cells["object"],
                     cells["scene"]])
    header = ["image", "split", "ih", "iw", "sh", "sw", "color", "object", "scene"]
    if break_what == "no sh column":
        header[4] = "height"
    if break_what == "missing mask":
        rows[2][6] = "nowhere.png"
    _write_csv(root / "index.csv", header, rows)
    _write_csv(root / "category.csv", ["name", "first", "last", "count", "frequency"],
               [["color", 1, 4, 4, 4], ["object", 4, 5, 2, 2], ["scene", 6, 7, 2, 2]])
    labels = [[0, "-", "", 0, 0, ""], [1, "red-c", "color(2)", 2, 1.0, ""],
              [2, "green-c", "color(2)", 2, 1.0, ""], [3, "blue-c", "color(1)", 1, 1.0, ""],
              [4, "apple", "object(1);color(1)", 1, 0.25, ""],
              [5, "leaf", "object(1)", 1, 0.4, ""],
              [6, "beach", "scene(1)", 1, 1.0, ""], [7, "forest", "scene(1)", 1, 1.0, ""]]
    if break_what == "bad number":
        labels[3][0] = "three"
    _write_csv(root / "label.csv", ["number", "name", "category", "frequency", "coverage",
                                    "syns"], labels)
    head = ["code", "number", "name", "frequency", "coverage"]
    _write_csv(root / "c_color.csv", head, [[1, 1, "red-c", 2, 0.75], [2, 2, "green-c", 2, 0.75],
                                            [3, 3, "blue-c", 1, 1.0], [4, 4, "apple", 1, 0.1]])
    _write_csv(root / "c_object.csv", head, [[1, 4, "apple", 1, 0.25], [2, 5, "leaf", 1, 0.375]])
    _write_csv(root / "c_scene.csv", head, [[1, 6, "beach", 1, 1.0], [2, 7, "forest", 1, 1.0]])
    return root


@pytest.fixture(scope="module")
def broden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_broden(tmp_path_factory.mktemp("broden"))


def run(loaded, data, out, *, progress=None, cancel=None, **kw):
    kw.setdefault("quantile", 0.35)
    kw.setdefault("workers", 0)
    kw.setdefault("batch_size", 2)
    return run_job(dissect(loaded, data, ["conv"], out=out, **kw), progress, cancel)


def test_ious_labels_and_summary_by_hand(broden: Path, tmp_path: Path) -> None:
    result = run(colour_net(), broden, tmp_path / "out", top_k=2)
    layer = result.layers["conv"]
    units = {u.unit: u for u in layer.units}
    # Every unit sees values −1, 0 and 1 (64 pixels each of its colour and of black, 128
    # of the rest): the 0.65 quantile lies among the zeros, so each mask is its colour.
    for u in units.values():
        assert abs(u.threshold) <= u.threshold_error < 1e-2
    per = {u: {c: v for c, v in units[u].per_category.items()} for u in units}
    # unit 0 (red): color red-c 64/(64 + 64 − 64) = 1. object: its mask in the images that
    # annotate objects (img0, img1) is 32 px; apple 16 px, all red: 16/(32 + 16 − 16) = 0.5
    # (over all images it would be 16/64). scene: mask in img2+img3 = 32 px, forest covers
    # img3 (64 px): 32/(32 + 64 − 32) = 0.5.
    assert per[0] == {"color": ("red-c", 1.0), "object": ("apple", 0.5),
                      "scene": ("forest", 0.5)}
    # unit 1 (green): leaf 24/(32 + 24 − 24) = 0.75; forest 32/(32 + 64 − 32) = 0.5
    assert per[1] == {"color": ("green-c", 1.0), "object": ("leaf", 0.75),
                      "scene": ("forest", 0.5)}
    # unit 2 (blue): beach 64/(64 + 64 − 64) = 1 ties with blue-c: the first category wins;
    # no object image has blue: 0 (the lowest label of the category on the tie)
    assert per[2] == {"color": ("blue-c", 1.0), "object": ("apple", 0.0),
                      "scene": ("beach", 1.0)}
    assert [(units[u].label, units[u].category, units[u].iou) for u in range(3)] == [
        ("red-c", "color", 1.0), ("green-c", "color", 1.0), ("blue-c", "color", 1.0)]
    assert not units[3].interpretable and units[3].iou == 0.0
    assert layer.summary == DissectionSummary(4, 3, 3, {
        "color": CategorySummary(3, 3), "object": CategorySummary(0, 0),
        "scene": CategorySummary(0, 0)})
    assert result.images == 4 and result.skipped == () and result.kind == "broden"
    # apple's primary category is object (coverage 0.25 > 0.1 in c_color.csv)
    assert find_concepts(broden).primary[4] == 1
    # the top images: red unit's best are img0 and img3 (max 1 each; ties by image order)
    strip = cv2.imread(units[0].top_images)
    assert strip is not None and strip.shape[1] > strip.shape[0]
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    u0 = doc["layers"]["conv"]["units"][0]
    assert {"unit", "label", "category", "iou", "threshold", "per_category"} <= u0.keys()
    assert u0["per_category"]["object"] == {"label": "apple", "iou": 0.5}
    print(f"\nhand-made Broden: {[(u.label, u.iou) for u in layer.units]}, {layer.summary}")


def test_categories_filter_and_min_iou(broden: Path, tmp_path: Path) -> None:
    result = run(colour_net(), broden, tmp_path / "o", categories=["object", "scene"],
                 min_iou=0.6, top_k=0)
    units = result.layers["conv"].units
    assert result.categories == ("object", "scene")
    # img2 and img3 carry no object, img0 and img1 no scene: all four have data
    assert [(u.label, u.iou, u.interpretable) for u in units[:3]] == [
        ("apple", 0.5, False), ("leaf", 0.75, True), ("beach", 1.0, True)]
    assert result.layers["conv"].summary.by_category == {
        "object": CategorySummary(1, 1), "scene": CategorySummary(1, 1)}
    again = run(colour_net(), broden, tmp_path / "o", categories=["object", "scene"],
                min_iou=0.4, top_k=0)
    assert again.cached and again.layers["conv"].summary.interpretable == 3


def test_threshold_matches_numpy_quantile_within_the_bound() -> None:
    rng = np.random.default_rng(1)
    batches = [rng.gamma(1.5, 2.0, (5, 6, 4, 4)).astype(np.float32) - 2 for _ in range(7)]
    batches[4] *= 9  # a widening range mid-stream
    sketch = QuantileSketch(6, torch.device("cpu"), bins=64)
    for b in batches:
        sketch.add(torch.from_numpy(b))
    values = np.concatenate([b.transpose(1, 0, 2, 3).reshape(6, -1) for b in batches], 1)
    for q in (0.995, 0.9, 0.5):
        got, bound = sketch.quantile(q)
        want = np.quantile(values, q, axis=1)
        assert (np.abs(got - want) <= bound).all(), (got, want, bound)
        assert (bound <= 2 * np.ptp(values, axis=1) / 63).all()
    print(f"\nsketch 64 bins: |error| {np.abs(got - want).max():.4f} ≤ bound {bound.max():.4f}")
    # the state depends on the values only: one big batch, or two shards merged
    whole = QuantileSketch(6, torch.device("cpu"), bins=64)
    whole.add(torch.from_numpy(np.concatenate(batches)))
    a, b = (QuantileSketch(6, torch.device("cpu"), bins=64) for _ in range(2))
    for x in batches[:3]:
        a.add(torch.from_numpy(x))
    for x in batches[3:]:
        b.add(torch.from_numpy(x))
    a.merge(b)
    want_state = sketch.state()
    for s in (whole, a):
        assert all(np.array_equal(s.state()[k], want_state[k]) for k in want_state)
    # where each window starts is free, not the histogram: canonical in the state
    assert (want_state["offset"] * np.ldexp(1.0, want_state["exp"])
            <= values.min(axis=1)).all()


@pytest.mark.parametrize("stop_at", [1, 3])  # in the threshold pass, in the tally pass
def test_cancel_and_resume_gives_the_identical_result(broden: Path, tmp_path: Path,
                                                       stop_at: int) -> None:
    whole = run(colour_net(), broden, tmp_path / "whole", batch_size=1, top_k=2)
    cancel = threading.Event()
    steps = []

    def stop(p: object) -> None:
        steps.append(p)
        if len(steps) == stop_at + 1:
            cancel.set()

    with pytest.raises(Cancelled):
        run(colour_net(), broden, tmp_path / "cut", batch_size=1, top_k=2, progress=stop,
            cancel=cancel, checkpoint_every=100)
    assert list((tmp_path / "cut" / ".partial").iterdir())
    again = run(colour_net(), broden, tmp_path / "cut", batch_size=1, top_k=2)
    assert again.resumed and not again.cached
    # batches of one image: the cancel after batch stop_at + 1 of the 4 of pass 1
    assert again.resumed_at == (1, stop_at + 1) and whole.resumed_at == (0, 0)
    assert not (tmp_path / "cut" / ".partial").exists()
    a, b = whole.to_json(), again.to_json()
    for doc in (a, b):
        for key in ("folder", "seconds", "images_per_s", "resumed", "resumed_at"):
            doc.pop(key)
        for lay in doc["layers"].values():
            lay.pop("folder")
            for u in lay["units"]:
                u.pop("top_images")
    assert a == b
    with np.load(tmp_path / "whole" / "conv" / "tally.npz") as x, \
            np.load(tmp_path / "cut" / "conv" / "tally.npz") as y:
        for key in ("both", "unit_cat", "label_px", "threshold", "top_ids"):
            assert np.array_equal(x[key], y[key]), key
    for unit in range(3):
        whole_strip = (tmp_path / "whole/conv" / f"unit_{unit:04d}.jpg").read_bytes()
        assert whole_strip == (tmp_path / "cut/conv" / f"unit_{unit:04d}.jpg").read_bytes()


@pytest.mark.parametrize(("breakage", "fragment"), [
    ("no sh column", "no column 'sh'"),
    ("missing mask", "mask"),
    ("bad number", "is not an integer"),
])
def test_malformed_broden_is_one_clear_error(tmp_path: Path, breakage: str,
                                             fragment: str) -> None:
    root = make_broden(tmp_path / "b", breakage)
    with pytest.raises(DissectionError, match=fragment) as exc:
        run(colour_net(), root, tmp_path / "o")
    assert "\n" not in str(exc.value)


def test_unknown_category_and_layer(broden: Path, tmp_path: Path) -> None:
    with pytest.raises(DissectionError, match="no category 'texture'"):
        run(colour_net(), broden, tmp_path / "o", categories=["texture"])
    with pytest.raises(DissectionError, match="no layer named 'fc9'"):
        run_job(dissect(colour_net(), broden, ["fc9"], out=tmp_path / "o", workers=0))


def test_simple_format_and_colour_folders(tmp_path: Path) -> None:
    simple = tmp_path / "simple"
    (simple / "masks" / "a").mkdir(parents=True)
    _write_csv(simple / "labels.csv", ["number", "name", "category"],
               [[1, "apple", "object"], [2, "sky", "stuff"]])
    (simple / "a").mkdir()
    for i, img in enumerate(IMAGES[:2]):
        cv2.imwrite(str(simple / "a" / f"p{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        lab = np.zeros((8, 8), np.int64)
        lab[:, :4] = 1 if i == 0 else 2
        _label_png(simple / "masks" / "a" / f"p{i}.png", lab)
    res = run(colour_net(), simple, tmp_path / "o1", quantile=0.3)
    red = res.layers["conv"].units[0]
    # red unit: 32 ones (img0's red half), 64 zeros (black), 32 −1s (img1's green): its mask
    # is img0's red half, which is apple; `stuff` (sky) is annotated on img1 only, where the
    # mask is empty: 0
    assert res.kind == "simple" and res.categories == ("object", "stuff")
    assert red.per_category == {"object": ("apple", 1.0), "stuff": ("sky", 0.0)}

    colours = tmp_path / "colours"
    for sub, img in (("cats", IMAGES[0]), ("dogs", _image(BLUE, BLACK))):
        (colours / sub).mkdir(parents=True)
        cv2.imwrite(str(colours / sub / "x.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    concepts = find_concepts(colours, label_side=8)
    assert concepts.kind == "colour" and concepts.categories == ("color", "class")
    assert concepts.names[-2:] == ("cats", "dogs")
    res = run(colour_net(), colours, tmp_path / "o2", quantile=0.3)
    units = res.layers["conv"].units
    # masks are 4×4 (half the input); red 32, black 64, blue 32 px: the 0.7 quantile is
    # among the zeros. Blue's mask is half of the dogs image, which `dogs` covers whole:
    # 8/(8 + 16 − 8)
    assert units[0].per_category["color"] == ("red", 1.0)
    assert units[2].per_category == {"color": ("blue", 1.0), "class": ("dogs", 0.5)}


def test_colour_terms_of_focal_colours() -> None:
    from app.engine.analyses.dissection.colours import focal_rgb

    pixels = np.array([[focal_rgb(n) for n in COLOUR_NAMES]], np.uint8)
    assert [COLOUR_NAMES[i] for i in colour_index(pixels)[0]] == list(COLOUR_NAMES)
    named = colour_index(np.array([[RED, GREEN, BLUE, (250, 250, 250), (5, 5, 5)]], np.uint8))
    assert [COLOUR_NAMES[i] for i in named[0]] == ["red", "green", "blue", "white", "black"]


def test_colour_terms_are_the_nearest_focal_colour_for_a_quarter_of_all_colours() -> None:
    """The plane-by-plane `colour_index` against the plain formula (nearest focal colour in
    L*a*b*, the first of equals) on every fourth of the 2^24 sRGB colours."""
    from app.engine.analyses.dissection.colours import _FOCAL_LAB, rgb_to_lab

    every = np.arange(0, 1 << 24, 4, dtype=np.uint32)
    rgb = np.stack([(every >> 16) & 255, (every >> 8) & 255, every & 255], -1).astype(
        np.uint8).reshape(1024, 4096, 3)
    for rows in range(0, 1024, 128):
        part = rgb[rows:rows + 128]
        lab = rgb_to_lab(part)
        nearest = ((lab[..., None, :] - _FOCAL_LAB) ** 2).sum(-1).argmin(-1)
        assert np.array_equal(colour_index(part), nearest), rows


def test_cli_exit_codes_and_json(broden: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import app.cli as cli
    import app.cli.dissect as dissect_command

    monkeypatch.setattr(dissect_command, "load_for",
                        lambda args: (colour_net(), dissect_command.settings_for(args)))
    argv = ["dissect", str(broden), "--layers", "conv", "--quantile", "0.35", "--workers", "0",
            "--out", str(tmp_path / "cli"), "--json"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["layers"]["conv"]["summary"]["interpretable"] == 3
    assert cli.main(argv[:-1]) == 0
    out = capsys.readouterr().out
    assert "red-c" in out and "interpretable" in out
    make_broden(tmp_path / "bad", "no sh column")
    for bad, fragment in (
        (["dissect", str(tmp_path / "missing")], "dataset folder not found"),
        (["dissect", str(broden), "--quantile", "2"], "--quantile"),
        (["dissect", str(broden), "--min-iou", "-1"], "--min-iou"),
        (["dissect", str(tmp_path / "bad"), "--layers", "conv"], "no column 'sh'"),
        (["dissect", str(broden), "--categories", "texture"], "no category 'texture'"),
        (["dissect", str(broden), "--layers", "nope", "--out", str(tmp_path / "x")],
         "no layer named 'nope'"),
    ):
        assert cli.main(bad) == 2, bad
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err, (bad, err)


@pytest.mark.slow
def test_bundled_model_names_colour_units_on_real_photos(tmp_path: Path) -> None:
    """EfficientNet-Lite0's stem on real photos with the built-in colour concepts: units
    labelled with a colour at IoU > 0.04 fire where that colour is."""
    import torch.nn.functional as F
    from photos import ASSETS

    from app.engine.runtime.models import load_bundled
    from app.engine.runtime.recorder import ActivationRecorder

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted((ASSETS / "samples").glob("*.jpg")):
        (folder / p.name).write_bytes(p.read_bytes())
    loaded = load_bundled(torch.device("cpu"))
    layer = "_blocks.1"
    result = run_job(dissect(loaded, folder, [layer], workers=0, batch_size=5, top_k=3,
                             out=tmp_path / "d"))
    named = [u for u in result.layers[layer].units
             if u.category == "color" and u.iou > 0.04]
    print(f"\n{layer}: {result.layers[layer].summary}; colour units: "
          + ", ".join(f"{u.unit}={u.label} ({u.iou:.3f})" for u in named))
    assert len(named) >= 3
    pre = loaded.preprocess
    inside = {u.unit: [0, 0] for u in named}  # pixels of the unit's colour: in / all
    outside = {u.unit: [0, 0] for u in named}
    with torch.no_grad(), ActivationRecorder(loaded.module, [layer]) as rec:
        for path in sorted(folder.iterdir()):
            rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            x = cv2.resize(rgb, (pre.size, pre.size), interpolation=cv2.INTER_AREA)
            t = (torch.from_numpy(x).permute(2, 0, 1)[None].float() / 255
                 - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(
                     1, 3, 1, 1)
            rec.run(t)
            side = pre.size // 2
            up = F.interpolate(rec.activations[layer], size=(side, side), mode="bilinear",
                               align_corners=False)[0]
            small = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
            names = np.asarray(COLOUR_NAMES)[colour_index(small)]
            for u in named:
                mask = (up[u.unit] > u.threshold).numpy()
                hit = names == u.label
                inside[u.unit][0] += int((hit & mask).sum())
                inside[u.unit][1] += int(mask.sum())
                outside[u.unit][0] += int((hit & ~mask).sum())
                outside[u.unit][1] += int((~mask).sum())
    for u in named:
        fin = inside[u.unit][0] / max(inside[u.unit][1], 1)
        fout = outside[u.unit][0] / max(outside[u.unit][1], 1)
        print(f"unit {u.unit} {u.label}: {fin:.1%} of its mask vs {fout:.1%} outside")
        assert fin > 2 * fout, (u, fin, fout)


def test_unreadable_folder_is_an_error_and_keeps_the_good_dissection(
        tmp_path: Path, monkeypatch, capfd) -> None:
    """An image folder none of whose files decode: exit 2, one line, no OpenCV chatter, and
    the layer's earlier dissection (what the unit card and the catalogue show) stays."""
    import app.cli as cli
    import app.cli.dissect as dissect_command
    from app.engine.analyses.dissection import cached_layer
    from app.engine.runtime.cache import model_key

    colours = tmp_path / "colours"
    colours.mkdir()
    for i, img in enumerate(IMAGES):
        cv2.imwrite(str(colours / f"c{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(5):
        (bad / f"broken{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[cache]\ndir = "{(tmp_path / "cache").as_posix()}"\n')
    monkeypatch.setattr(dissect_command, "load_for",
                        lambda args: (colour_net(), dissect_command.settings_for(args)))
    common = ["--layers", "conv", "--quantile", "0.3", "--workers", "0", "--settings",
              str(settings), "--json"]
    assert cli.main(["dissect", str(colours), *common]) == 0
    capfd.readouterr()
    model_folder = tmp_path / "cache" / model_key(colour_net())
    found = cached_layer(model_folder, "conv")
    assert found is not None and found[1].units[0].label == "red" and found[0].images == 4

    for workers in ("0", "2"):
        argv = ["dissect", str(bad), *common]
        argv[argv.index("--workers") + 1] = workers
        assert cli.main(argv) == 2
        captured = capfd.readouterr()
        errors = [line for line in captured.err.splitlines() if "error" in line.lower()]
        assert len(errors) == 1 and "none of the 5 images" in errors[0], captured.err
        assert "WARN" not in captured.err and "Traceback" not in captured.err
        assert captured.out == ""
    again = cached_layer(model_folder, "conv")
    assert again is not None and again[0].dataset == found[0].dataset
    assert again[1] == found[1]
    assert not list(model_folder.glob("dissect/*/.partial/*"))


def test_cli_says_that_and_where_a_dissection_resumed(broden: Path, tmp_path: Path,
                                                       monkeypatch, capsys) -> None:
    import app.cli as cli
    import app.cli.dissect as dissect_command

    cancel = threading.Event()

    def stop(p: object) -> None:
        cancel.set()  # after the first batch of one image

    with pytest.raises(Cancelled):
        run(colour_net(), broden, tmp_path / "cut", batch_size=1, top_k=2, progress=stop,
            cancel=cancel, checkpoint_every=100)
    monkeypatch.setattr(dissect_command, "load_for",
                        lambda args: (colour_net(), dissect_command.settings_for(args)))
    argv = ["dissect", str(broden), "--layers", "conv", "--quantile", "0.35", "--workers", "0",
            "--batch-size", "1", "--top-k", "2", "--out", str(tmp_path / "cut")]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert ("dissect: resumed an interrupted run in pass 1 (thresholds) after 1 image, from "
            f"its checkpoint in {(tmp_path / 'cut').as_posix()}") in captured.err
    assert "red-c" in captured.out


def test_the_windows_message_reads_the_typed_summary(broden: Path, tmp_path: Path) -> None:
    from app.session.jobs.datasets import concepts_message

    result = run(colour_net(), broden, tmp_path / "o", categories=["object", "scene"],
                 min_iou=0.6, top_k=0)
    message = concepts_message(result, result.layers["conv"])
    assert (message.interpretable, message.unique) == (2, 2)
    assert message.by_category == (("object", 1, 1), ("scene", 1, 1))


def test_an_unwritable_cache_folder_is_one_line_naming_the_setting(
        broden: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import app.cli as cli
    import app.cli.dissect as dissect_command

    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder should be")
    settings = tmp_path / "s.toml"
    settings.write_text(f'[cache]\ndir = "{(blocker / "cache").as_posix()}"\n')
    monkeypatch.setattr(dissect_command, "load_for",
                        lambda args: (colour_net(), dissect_command.settings_for(args)))
    code = cli.main(["dissect", str(broden), "--layers", "conv", "--workers", "0",
                     "--settings", str(settings)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "cannot write to the cache folder" in err and "[cache].dir" in err


def test_a_tile_dims_outside_the_mask_and_draws_its_edge_yellow(tmp_path: Path) -> None:
    from app.engine.analyses.dissection.tiles import EDGE_RGB, draw_masks, strip_path

    rgb = np.full((6, 6, 3), 200, np.uint8)
    square = np.zeros((6, 6), bool)
    square[1:5, 1:5] = True  # a 4 × 4 square: 12 edge pixels around a 2 × 2 inside
    drawn = draw_masks(rgb, np.stack([square, np.zeros_like(square)]))
    assert drawn.shape == (2, 6, 6, 3)
    assert (drawn[0][~square] == 60).all()  # 200 × 0.3
    assert (drawn[0][2:4, 2:4] == 200).all()
    edge = square.copy()
    edge[2:4, 2:4] = False
    assert (drawn[0][edge] == EDGE_RGB).all() and edge.sum() == 12
    assert (drawn[1] == 60).all()  # a unit that did not fire: all dimmed, no edge
    # a mask reaching the border has no edge along it (the border pads with itself)
    full = draw_masks(rgb, np.ones((1, 6, 6), bool))[0]
    assert (full == 200).all()
    # strips of older dissections were PNGs: found as well as the new JPEGs
    (tmp_path / "unit_0003.png").write_bytes(b"old")
    (tmp_path / "unit_0004.jpg").write_bytes(b"new")
    assert strip_path(tmp_path, 3) == tmp_path / "unit_0003.png"
    assert strip_path(tmp_path, 4) == tmp_path / "unit_0004.jpg"
    assert strip_path(tmp_path, 5) is None


def test_the_tally_threads_leave_torchs_thread_count_as_it_was(broden: Path,
                                                               tmp_path: Path) -> None:
    """Pass 2's threads run their ops on one OpenMP thread each; torch's default for the
    threads the process starts later (the window's, a next job's) is given back."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run(colour_net(), broden, tmp_path / "o", top_k=2)
        seen: list[int] = []
        later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        later.start()
        later.join()
        assert seen == [2] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_tally_pool_runs_one_openmp_thread_per_thread_and_no_fewer_elsewhere() -> None:
    from app.engine.analyses.dissection.job import TALLY_THREADS, _tally_pool

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _tally_pool() as pool:
            inside = list(pool.map(lambda _: torch.get_num_threads(), range(8)))
            seen: list[int] = []  # a thread started meanwhile (the window's, a next job's)
            other = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
            other.start()
            other.join()
            names = {t.name for t in threading.enumerate() if t.name.startswith("tally")}
        assert inside == [1] * 8 and seen == [2] and torch.get_num_threads() == 2
        assert len(names) == TALLY_THREADS
    finally:
        torch.set_num_threads(before)
