"""Dataset scan: exact top-k against brute force, resume, merge, bad files, CLI, real model."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from app.capture.images import read_image
from app.core.files import list_images
from app.core.jobs import Cancelled, run_job
from app.core.scan_results import EMPTY, load_scan, load_scan_folder, merge_candidates
from app.engine.analyses.patches import ScanError, scan
from app.engine.analyses.patches.crops import image_box, letterbox
from app.engine.analyses.patches.dataset_scan import TopKTracker
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import Preprocess, prepare_batch


def run_scan(loaded, dataset, layers, progress=None, cancel=None, **kw):
    """The scan job driven to its report, as the CLI and the GUI drive it."""
    return run_job(scan(loaded, dataset, layers, **kw), progress, cancel)


PRE = Preprocess(size=32, crop_fraction=1.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
LAYERS = ["pool", "conv2"]


class ScanNet(nn.Module):
    """Integer weights on integer inputs: every activation is an exact integer, whatever the
    batch or summation order, so brute force and scan must agree to the last bit."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=2, dilation=2)
        self.head = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, 3)
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for m in (self.conv1, self.conv2, self.fc):
                m.weight.copy_(torch.randint(-2, 3, m.weight.shape, generator=g).float())
                m.bias.copy_(torch.randint(-3, 4, m.bias.shape, generator=g).float())

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        q = torch.round(x * 4)  # inputs in [-1, 1] → integers -4..4
        pool = self.pool(self.relu(self.conv1(q)))
        return {"pool": pool, "conv2": self.conv2(pool)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.features(x)["conv2"]).flatten(1))


def tiny_loaded() -> LoadedModel:
    return LoadedModel("scannet", ScanNet().eval(), PRE, ("a", "b", "c"), torch.device("cpu"))


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """n small PNGs (40×48, so the centre crop and resize matter), in class sub-folders,
    with a few exact duplicates so ties across images occur."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        sub = folder / f"class{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        if i % 7 == 6:
            img = cv2.imread(str(paths[i - 5]))  # a duplicate of an earlier image
        else:
            low = rng.integers(0, 256, (5, 6, 3)).astype(np.uint8)  # smooth blobs
            img = cv2.resize(low, (48, 40), interpolation=cv2.INTER_CUBIC)
            img = cv2.add(img, rng.integers(0, 40, img.shape).astype(np.uint8))
        p = sub / f"img{i:03d}.png"
        assert cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def brute_force(loaded: LoadedModel, files: list[str], layer: str, k: int):
    """Per unit, the k best (value, path, y, x) over all images, each image on its own."""
    maps = []
    with torch.no_grad():
        for f in files:
            t = torch.from_numpy(read_image(f)).permute(2, 0, 1)
            x = prepare_batch([t], loaded.preprocess)
            maps.append(loaded.module.features(x)[layer][0].numpy())
    maps = np.stack(maps)  # (N, C, H, W)
    n, c, h, w = maps.shape
    flat = maps.reshape(n, c, h * w)
    loc = flat.argmax(2)  # first maximum, as the scan documents
    val = flat.max(2)
    out = []
    for u in range(c):
        order = sorted(range(n), key=lambda i: (-val[i, u], files[i]))[:k]
        out.append([(float(val[i, u]), files[i], int(loc[i, u] // w), int(loc[i, u] % w))
                    for i in order])
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_images(root, 23)
    return root


def _scan(loaded, dataset, out, **kw):
    kw.setdefault("top_k", 4)
    kw.setdefault("batch_size", 4)
    kw.setdefault("workers", 0)
    return run_scan(loaded, dataset, LAYERS, out=out, **kw)


def _same_results(a: Path, b: Path) -> None:
    for layer in LAYERS:
        ra = load_scan_folder(a / layer)
        rb = load_scan_folder(b / layer)
        assert ra is not None and rb is not None
        for u in range(ra.units):
            assert ra.top(u) == rb.top(u), (layer, u)
        assert np.array_equal(np.asarray(ra.crops), np.asarray(rb.crops))


def test_scan_top_k_equals_brute_force(dataset, tmp_path):
    loaded = tiny_loaded()
    report = _scan(loaded, dataset, tmp_path / "scan")
    files = list_images(dataset)
    assert report.files == report.scanned == len(files) == 23 and not report.skipped
    for layer in LAYERS:
        res = load_scan_folder(tmp_path / "scan" / layer)
        assert res is not None and res.units == loaded.module.features(
            torch.zeros(1, 3, 32, 32))[layer].shape[1]
        expected = brute_force(loaded, files, layer, 4)
        values = [[e[0] for e in unit] for unit in expected]
        assert any(len(set(v)) < len(v) for v in values), "test set must contain ties"
        rf = report.rf[layer]
        for u in range(res.units):
            got = res.top(u)
            assert [(e.value, e.path, e.y, e.x) for e in got] == expected[u], (layer, u)
            for e in got:
                assert e.model_box == rf.box(e.y, e.x)
                # 40×48 file, crop fraction 1: the model saw columns 4..44, scaled by 40/32
                y0, x0, y1, x1 = e.model_box
                assert e.box == (int(np.floor(y0 * 1.25)), int(np.floor(4 + x0 * 1.25)),
                                 int(np.ceil(y1 * 1.25)), int(np.ceil(4 + x1 * 1.25)))
        crops = res.unit_crops(1)
        best = res.top(1)[0]
        b = best.box
        assert np.array_equal(crops[0], letterbox(read_image(best.path)[b[0]:b[2], b[1]:b[3]], 96))


def test_receptive_field_of_tiny_net_by_hand():
    from app.engine.runtime.receptive_field import receptive_field

    rf = receptive_field(ScanNet(), "conv2", 32)
    # conv2 (k3, dilation 2, pad 2) at m reads pool cells m-2, m, m+2 that exist; pool cell j
    # (2×2) reads conv1 cells 2j, 2j+1; conv1 (k3, stride 2, pad 1) cell i reads input
    # 2i-1 .. 2i+1. So m sees [4m − 9, 4m + 12) — except where a dilated tap falls on the
    # padding: m = 1 reads pool cells 1 and 3 only, and starts at input row 3, not 0.
    assert rf.map_shape == (8, 8)
    for m in range(8):
        cells = [j for j in (m - 2, m, m + 2) if 0 <= j < 8]
        expect = (max(0, 4 * min(cells) - 1), min(32, 4 * max(cells) + 4))
        assert tuple(rf.rows[m]) == expect == tuple(rf.cols[m])
    assert tuple(rf.rows[1]) == (3, 16)
    assert rf.stride == (4.0, 4.0) and rf.size == (21, 21)


def test_image_box_maps_back_through_crop_and_downscale():
    pre = Preprocess(224, 0.875)
    # 480×640 frame: the model saw the centred 420-px square at x=110, y=30
    assert image_box((0, 0, 224, 224), (480, 640), (480, 640), pre) == (30, 110, 450, 530)
    # the same file at twice the size, downscaled to 640 wide for the model
    assert image_box((0, 0, 224, 224), (960, 1280), (480, 640), pre) == (60, 220, 900, 1060)
    assert image_box((10, 20, 30, 40), (480, 640), (480, 640), pre) == (48, 147, 87, 185)


def test_tracker_merges_any_batch_grouping_with_stable_ties():
    g = torch.Generator().manual_seed(0)
    acts = torch.randint(0, 4, (12, 3, 2, 2), generator=g).float()  # many ties
    whole = TopKTracker(3, 5, torch.device("cpu"))
    whole.commit(whole.merged(acts, torch.arange(12)))
    parts = TopKTracker(3, 5, torch.device("cpu"))
    for idx in ([5, 6, 7, 8], [0, 1], [9, 10, 11, 2, 3, 4]):  # out of order on purpose
        parts.commit(parts.merged(acts[idx], torch.tensor(idx)))
    for name in ("values", "ids", "locs"):
        assert torch.equal(getattr(whole, name), getattr(parts, name))
    flat = acts.flatten(2)
    for u in range(3):
        expect = sorted(range(12), key=lambda i: (-float(flat[i, u].max()), i))[:5]
        assert whole.ids[u].tolist() == expect
    # numpy merge used by --merge: same order, duplicates counted once
    vals = np.array([[3.0, 1.0, 3.0, 2.0, 3.0]])
    keys = np.array([[4, 0, 2, 1, 2]])
    chosen = merge_candidates(vals, keys, 4)
    assert keys[0, chosen[0, :3]].tolist() == [2, 4, 1] and chosen[0, 3] == 1
    assert merge_candidates(vals[:, :1], keys[:, :1], 3)[0].tolist() == [0, -1, -1]


def test_a_killed_scans_staging_folder_is_removed_by_the_next_scan(dataset, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "scan"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = out / f".staging-{int(gone.stdout)}-0badc0de"  # a scan killed mid-crops
    dead.mkdir(parents=True)
    (dead / "conv2.npy").write_bytes(b"\0" * 4096)
    running = out / f".staging-{os.getppid()}-feedbeef"  # a scan still running elsewhere
    running.mkdir()
    _scan(tiny_loaded(), dataset, out)
    assert not dead.exists() and running.is_dir()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".staging")) == [
        running.name]


def test_interrupted_scan_resumes_to_the_identical_result(dataset, tmp_path):
    loaded = tiny_loaded()
    _scan(loaded, dataset, tmp_path / "whole")

    def explode(p):
        if p.stage == "scan" and p.done >= 12:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        _scan(loaded, dataset, tmp_path / "killed", checkpoint_every=2, progress=explode)
    assert list((tmp_path / "killed" / ".partial").glob("*/state.npz"))
    assert load_scan_folder(tmp_path / "killed" / "conv2") is None
    report = _scan(loaded, dataset, tmp_path / "killed", checkpoint_every=2)
    assert report.resumed_from == 12 and report.scanned == 23
    _same_results(tmp_path / "whole", tmp_path / "killed")
    assert not list((tmp_path / "killed" / ".partial").glob("*/*"))

    cancel = threading.Event()

    def stop_after_two(p):
        if p.done >= 8:
            cancel.set()

    with pytest.raises(Cancelled):
        _scan(loaded, dataset, tmp_path / "cancelled", checkpoint_every=50,
              progress=stop_after_two, cancel=cancel)
    report = _scan(loaded, dataset, tmp_path / "cancelled")
    assert report.resumed_from == 8
    _same_results(tmp_path / "whole", tmp_path / "cancelled")
    again = _scan(loaded, dataset, tmp_path / "cancelled")
    assert again.cached and again.layers == report.layers


def test_shards_merge_into_the_whole_scan(dataset, tmp_path):
    from app.cli import main
    from app.engine.analyses.patches.dataset_scan import merge_scans

    loaded = tiny_loaded()
    _scan(loaded, dataset, tmp_path / "whole", batch_size=5)
    for i in range(3):
        r = _scan(loaded, dataset, tmp_path / f"part{i}", shard=(i, 3), batch_size=3)
        assert r.files == len(range(i, 23, 3))
    merge_scans([tmp_path / f"part{i}" for i in range(3)], tmp_path / "merged")
    _same_results(tmp_path / "whole", tmp_path / "merged")
    # merging a part with itself changes nothing: the same image is counted once
    merge_scans([tmp_path / "whole", tmp_path / "whole"], tmp_path / "twice")
    _same_results(tmp_path / "whole", tmp_path / "twice")
    assert main(["scan", "--merge", str(tmp_path / "part0"), str(tmp_path / "part1"),
                 str(tmp_path / "part2"), "--out", str(tmp_path / "cli")]) == 0
    _same_results(tmp_path / "whole", tmp_path / "cli")


def test_corrupt_files_are_skipped_counted_and_listed(tmp_path):
    data = tmp_path / "data"
    make_images(data, 9, seed=3)
    good = read_image(data / "class0" / "img000.png")
    _ok, jpeg = cv2.imencode(".jpg", good)
    (data / "truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    (data / "notes.png").write_text("not an image")
    (data / "empty.jpg").write_bytes(b"")
    (data / "readme.txt").write_text("ignored: not an image name")
    report = run_scan(tiny_loaded(), data, LAYERS, top_k=3, batch_size=4, workers=2,
                      out=tmp_path / "scan")
    assert report.files == 12 and report.scanned == 9
    assert sorted(Path(p).name for p, _ in report.skipped) == \
        ["empty.jpg", "notes.png", "truncated.jpg"]
    assert all(reason for _, reason in report.skipped)
    res = load_scan_folder(tmp_path / "scan" / "conv2")
    assert res is not None and len(res.skipped) == 3
    assert not any("truncated" in p or "notes" in p or "empty" in p for p in res.paths)


def test_fewer_images_than_k_leave_empty_slots(tmp_path):
    make_images(tmp_path / "d", 2)
    run_scan(tiny_loaded(), tmp_path / "d", ["conv2"], top_k=4, workers=0, out=tmp_path / "s")
    res = load_scan_folder(tmp_path / "s" / "conv2")
    assert res is not None and len(res.top(0)) == 2 and (res.file[:, 2:] == EMPTY).all()
    assert res.unit_crops(0).shape == (2, 96, 96, 3)


def test_default_cache_location_and_load_scan(tmp_path):
    from app.engine.runtime.cache import model_key

    loaded = tiny_loaded()
    make_images(tmp_path / "d", 5)
    report = run_scan(loaded, tmp_path / "d", ["conv2"], top_k=2, workers=0,
                      cache_dir=str(tmp_path / "cache"))
    res = load_scan(tmp_path / "cache", model_key(loaded), "conv2")
    assert res is not None and res.folder == report.layers["conv2"]
    assert res.meta["datasets"][0]["files"] == 5 and res.meta["cache_format"] >= 1
    assert load_scan(tmp_path / "cache", model_key(loaded), "pool") is None


def test_bad_requests_raise_scan_error(tmp_path):
    make_images(tmp_path / "d", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScanError, match="no layer named 'nope'"):
        run_scan(tiny_loaded(), tmp_path / "d", ["nope"], workers=0, out=tmp_path / "s")
    with pytest.raises(ScanError, match="no images"):
        run_scan(tiny_loaded(), tmp_path / "empty", ["conv2"], workers=0, out=tmp_path / "s")


def test_cli_json_document_and_errors(monkeypatch, capsys, tmp_path):
    import app.cli as cli
    import app.cli.scan as scan_command

    make_images(tmp_path / "d", 6)
    monkeypatch.setattr(scan_command, "load_for",
                        lambda args: (tiny_loaded(), scan_command.settings_for(args)))
    argv = ["scan", str(tmp_path / "d"), "--layers", "conv2", "pool", "--top-k", "2",
            "--batch-size", "4", "--workers", "0", "--out", str(tmp_path / "out"), "--json"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"model", "dataset", "folder", "files", "scanned", "skipped", "cached", "layers",
            "seconds", "images_per_s", "resumed_from"} <= doc.keys()
    assert doc["files"] == doc["scanned"] == 6 and doc["skipped"] == []
    assert [layer["name"] for layer in doc["layers"]] == ["conv2", "pool"]
    conv2 = doc["layers"][0]
    assert conv2["units"] == 5 and len(conv2["top"]) == 5 and conv2["map_shape"] == [8, 8]
    assert conv2["receptive_field"] == {"size": [21, 21], "stride": [4.0, 4.0]}
    entry = conv2["top"][0][0]
    assert set(entry) == {"path", "value", "y", "x", "box"} and len(entry["box"]) == 4
    assert cli.main(argv) == 0 and json.loads(capsys.readouterr().out)["cached"] is True

    for bad, fragment in (
        (["scan"], "DATASET"),
        (["scan", str(tmp_path / "missing")], "dataset not found"),
        (["scan", str(tmp_path / "d"), "--top-k", "0"], "--top-k must be positive"),
        (["scan", str(tmp_path / "d"), "--shard", "3/2"], "--shard"),
        (["scan", str(tmp_path / "d"), "--layers", "fc9", "--out", str(tmp_path / "o")],
         "no layer named 'fc9'"),
        (["scan", "--merge", str(tmp_path / "out")], "at least two"),
    ):
        assert cli.main(bad) == 2, bad
        err = capsys.readouterr().err.strip()
        assert fragment in err and "\n" not in err, (bad, err)


@pytest.mark.slow
def test_bundled_model_on_real_photos(tmp_path):
    """End to end on real photos: the recorded best value of a unit is what the model gives
    when its best image is run again, at the recorded location."""
    from photos import ASSETS, write_jpeg
    from skimage import data as skdata

    from app.engine.runtime.models import load_bundled
    from app.engine.runtime.recorder import ActivationRecorder

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted((ASSETS / "samples").glob("*.jpg")):
        (folder / p.name).write_bytes(p.read_bytes())
    for name in ("camera", "coins", "hubble_deep_field", "immunohistochemistry"):
        img = getattr(skdata, name)()
        write_jpeg(folder / f"sk_{name}.jpg", np.dstack([img] * 3) if img.ndim == 2 else img)
    loaded = load_bundled(torch.device("cpu"))
    layer = "_blocks.8"
    report = run_scan(loaded, folder, [layer], top_k=3, batch_size=3, workers=0,
                      out=tmp_path / "scan")
    assert report.scanned == len(list(folder.iterdir())) >= 5 and not report.skipped
    res = load_scan_folder(report.layers[layer])
    assert res is not None and res.units == 112 and res.meta["map_shape"] == [14, 14]
    rng = np.random.default_rng(0)
    with torch.no_grad(), ActivationRecorder(loaded.module, [layer]) as rec:
        for unit in rng.choice(res.units, 6, replace=False):
            best = res.top(int(unit))[0]
            img = read_image(best.path)
            x = prepare_batch([torch.from_numpy(img).permute(2, 0, 1)], loaded.preprocess)
            rec.run(x)
            fmap = rec.activations[layer][0, int(unit)]
            assert float(fmap[best.y, best.x]) == pytest.approx(best.value, rel=1e-4, abs=1e-4)
            assert float(fmap.max()) == pytest.approx(best.value, rel=1e-4, abs=1e-4)
            y0, x0, y1, x1 = best.box
            h, w = img.shape[:2]
            assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w
            assert res.unit_crops(int(unit))[0].any()


def test_live_top_k_matches_brute_force_and_cuts_patches():
    from app.engine.live.live_topk import LiveTopK
    from app.engine.runtime.receptive_field import receptive_field

    net = ScanNet().eval()
    rf = receptive_field(net, "conv2", 32)
    g = torch.Generator().manual_seed(1)
    live = LiveTopK(k=3, thumb_size=8)
    frames, maps = [], []
    for fid in range(20):
        acts = torch.randint(0, 6, (5, 8, 8), generator=g).float()  # ties across frames
        color = (fid * 12) % 256
        frame = np.full((40, 48, 3), color, np.uint8)  # one flat colour per frame
        live.update(acts, fid, frame, PRE.crop_box(40, 48), rf)
        frames.append(color)
        maps.append(acts.flatten(1).numpy())
    maps = np.stack(maps)  # (frames, C, HW)
    for u in range(5):
        best = sorted(range(20), key=lambda f: (-maps[f, u].max(), f))[:3]
        got = live.top(u)
        assert [e.frame_id for e in got] == best
        for e in got:
            assert e.value == maps[e.frame_id, u].max()
            assert e.y * 8 + e.x == int(maps[e.frame_id, u].argmax())
            y0, x0, y1, x1 = rf.box(e.y, e.x)
            assert e.box == (int(np.floor(y0 * 1.25)), int(np.floor(4 + x0 * 1.25)),
                             int(np.ceil(y1 * 1.25)), int(np.ceil(4 + x1 * 1.25)))
            assert e.thumbnail.shape == (8, 8, 3) and (e.thumbnail == frames[e.frame_id]).all()
    assert live.thumbs.shape == (5, 3, 3, 8, 8)  # bounded: k thumbnails per unit, no frames
    live.update(torch.zeros(2, 4, 4), 99, np.zeros((40, 48, 3), np.uint8),
                PRE.crop_box(40, 48), receptive_field(net, "pool", 32))
    assert [e.frame_id for e in live.top(0)] == [99]  # a new layer starts afresh


def _unreadable_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "notes.png").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "half.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return folder


def test_a_folder_with_no_readable_image_is_one_clear_error(tmp_path, monkeypatch, capsys):
    import app.cli as cli
    import app.cli.scan as scan_command

    bad = _unreadable_folder(tmp_path / "bad")
    for workers in (0, 2):
        with pytest.raises(ScanError, match=r"none of the 3 image files .* could be read"):
            run_scan(tiny_loaded(), bad, LAYERS, workers=workers, out=tmp_path / "s")
    assert not (tmp_path / "s" / "conv2").exists()
    assert not list((tmp_path / "s").glob(".partial/*"))  # no checkpoint of nothing kept
    # the window's scan job fails with the same line (its runner shows the message)
    from app.core.requests import ScanRequest
    from app.core.settings import Settings, with_overrides
    from app.session.jobs import JobContext, drain, make_job

    settings = with_overrides(Settings(), "cache", dir=str(tmp_path / "cache"))
    job = make_job(JobContext(settings, tiny_loaded(), {"conv2": 8}),
                   ScanRequest(str(bad), "conv2"))
    assert job is not None
    with pytest.raises(ScanError, match="none of the 3 image files"):
        drain(job)

    monkeypatch.setattr(scan_command, "load_for",
                        lambda args: (tiny_loaded(), scan_command.settings_for(args)))
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("no image here")
    (tmp_path / "void").mkdir()
    for folder, fragment in ((bad, "could be read"), (texts, "no images"),
                             (tmp_path / "void", "no images")):
        argv = ["scan", str(folder), "--layers", "conv2", "--workers", "0",
                "--out", str(tmp_path / "cli")]
        assert cli.main(argv) == 2, folder
        captured = capsys.readouterr()
        errors = [line for line in captured.err.splitlines() if "error" in line]
        assert len(errors) == 1 and fragment in errors[0], captured.err
        assert "Traceback" not in captured.err and captured.out == ""


def test_cli_says_that_and_where_a_scan_resumed(dataset, tmp_path, monkeypatch, capsys):
    import app.cli as cli
    import app.cli.scan as scan_command

    cancel = threading.Event()

    def stop_after_three(p):
        if p.done >= 12:  # batches of 4: three of them
            cancel.set()

    with pytest.raises(Cancelled):
        _scan(tiny_loaded(), dataset, tmp_path / "cut", checkpoint_every=50,
              progress=stop_after_three, cancel=cancel)
    monkeypatch.setattr(scan_command, "load_for",
                        lambda args: (tiny_loaded(), scan_command.settings_for(args)))
    argv = ["scan", str(dataset), "--layers", *LAYERS, "--top-k", "4", "--batch-size", "4",
            "--workers", "0", "--out", str(tmp_path / "cut")]
    assert cli.main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    assert f"scan: resumed an interrupted scan after 12 of 23 files, from its checkpoint in " \
           f"{tmp_path / 'cut'}" in captured.err
    assert "(resumed at 12)" in captured.err  # the progress line says it too
    assert json.loads(captured.out)["resumed_from"] == 12


def test_an_unwritable_cache_folder_is_one_line_naming_the_setting(tmp_path, monkeypatch,
                                                                   capsys):
    import app.cli as cli
    import app.cli.scan as scan_command
    from app.core.requests import ScanRequest
    from app.core.settings import load_settings
    from app.engine.runtime.cache import CacheError
    from app.session.jobs import JobContext, drain, make_job

    make_images(tmp_path / "d", 3)
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder should be")  # root can't write it either
    bad = blocker / "cache"
    with pytest.raises(CacheError, match=r"cannot write to the cache folder .*\[cache\]\.dir"):
        run_scan(tiny_loaded(), tmp_path / "d", ["conv2"], workers=0, cache_dir=str(bad))
    settings = tmp_path / "s.toml"
    settings.write_text(f'[cache]\ndir = "{bad.as_posix()}"\n')
    # the window's scan job fails with the same line
    job = make_job(JobContext(load_settings(settings), tiny_loaded(), {"conv2": 8}),
                   ScanRequest(str(tmp_path / "d"), "conv2"))
    assert job is not None
    with pytest.raises(CacheError, match=r"\[cache\]\.dir"):
        drain(job)
    monkeypatch.setattr(scan_command, "load_for",
                        lambda args: (tiny_loaded(), scan_command.settings_for(args)))
    code = cli.main(["scan", str(tmp_path / "d"), "--layers", "conv2", "--workers", "0",
                     "--settings", str(settings)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "[cache].dir" in errors[0] and str(bad) in errors[0]
