"""Dissection in one network pass (unit maps spooled to disk) against the two-pass path
(`spool_gb=0`, a second forward): identical tallies, thresholds, top images, labels and
IoUs, on the synthetic Broden net and on the bundled model with colour concepts on real
photos; the network runs once over the images; resume with the spool, and the fallbacks
when the spool is over budget or gone."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from test_dissection import broden, colour_net, run  # noqa: F401  (broden: a fixture)

from app.core.jobs import Cancelled, run_job
from app.core.settings import SettingsError, settings_from_dict
from app.engine.analyses.dissection import dissect
from app.engine.analyses.dissection.spool import label_bytes, spool_bytes
from app.engine.runtime.models import LoadedModel

PROBE = 1  # the image of the layer discovery (`discover_layers`), before any pass
TALLY_KEYS = ("both", "unit_cat", "label_px", "threshold", "error", "top_ids", "top_values")


def counting(loaded: LoadedModel, layer: str) -> list[int]:
    """Images through `layer` of `loaded`, counted by a forward hook."""
    seen = [0]
    module = dict(loaded.module.named_modules())[layer]
    module.register_forward_hook(lambda m, i, o: seen.__setitem__(0, seen[0] + o.shape[0]))
    return seen


def comparable(result) -> dict:  # type: ignore[no-untyped-def]
    doc = result.to_json()
    for key in ("folder", "seconds", "images_per_s", "resumed", "resumed_at", "cached"):
        doc.pop(key, None)
    for lay in doc["layers"].values():
        lay.pop("folder")
        for u in lay["units"]:
            u.pop("top_images")
    return doc


def assert_same(a: Path, b: Path, layers: list[str], units: int) -> None:
    """The stored tallies and every unit's strip of dissections `a` and `b` are equal."""
    for layer in layers:
        with np.load(a / layer / "tally.npz") as x, np.load(b / layer / "tally.npz") as y:
            for key in TALLY_KEYS:
                assert np.array_equal(x[key], y[key]), (layer, key)
        strips = 0
        for unit in range(units):
            pa, pb = a / layer / f"unit_{unit:04d}.jpg", b / layer / f"unit_{unit:04d}.jpg"
            assert pa.is_file() == pb.is_file(), (layer, unit)
            if pa.is_file():
                strips += 1
                assert pa.read_bytes() == pb.read_bytes(), (layer, unit)
        assert strips, layer  # a layer without strips would compare nothing


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every image file the dissection's loader decodes (in this process: workers=0)."""
    import app.engine.analyses.dissection.loader as loader

    reads: list[str] = []
    real = loader.read_image

    def read(path: str, *args: object) -> np.ndarray:
        reads.append(Path(path).name)
        return real(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(loader, "read_image", read)
    return reads


def test_one_pass_equals_two_passes_on_broden(broden: Path, tmp_path: Path,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    one_net, two_net = colour_net(), colour_net()
    once, twice = counting(one_net, "conv"), counting(two_net, "conv")
    reads = counting_reads(monkeypatch)
    one = run(one_net, broden, tmp_path / "one", top_k=2)
    # one pass decodes each image once: pass 2 reads labels and thumbnails from the spool
    assert sorted(reads) == [f"img{i}.png" for i in range(4)]
    reads.clear()
    two = run(two_net, broden, tmp_path / "two", top_k=2, spool_gb=0)
    assert sorted(reads) == sorted(2 * [f"img{i}.png" for i in range(4)])
    assert comparable(one) == comparable(two)
    assert [u.label for u in one.layers["conv"].units][:3] == ["red-c", "green-c", "blue-c"]
    assert_same(tmp_path / "one", tmp_path / "two", ["conv"], 4)
    # 4 images, batches of 2: the network saw each image once, against twice
    assert once[0] == PROBE + 4 and twice[0] == PROBE + 8
    assert not (tmp_path / "one" / ".partial").exists()  # the spool went with the checkpoint


def test_an_unreadable_label_file_is_skipped_alike_in_one_pass_and_two(
        tmp_path: Path) -> None:
    """img2's colour mask is not a PNG: its activations count towards the thresholds (the
    image itself reads) and the tally skips it, whether pass 2 reads the spool or the
    files again."""
    from test_dissection import make_broden

    data = make_broden(tmp_path / "data")
    (data / "images" / "img2_color.png").write_bytes(b"not a PNG at all")
    one = run(colour_net(), data, tmp_path / "one", top_k=2)
    two = run(colour_net(), data, tmp_path / "two", top_k=2, spool_gb=0)
    assert [Path(p).name for p, _ in one.skipped] == ["img2.png"]
    assert "img2_color.png" in one.skipped[0][1]
    assert one.skipped == two.skipped
    assert comparable(one) == comparable(two) and one.images == 3
    assert_same(tmp_path / "one", tmp_path / "two", ["conv"], 4)


def test_over_budget_runs_the_network_twice(broden: Path, tmp_path: Path) -> None:  # noqa: F811
    net = colour_net()
    seen = counting(net, "conv")
    # 4 images × 4 units × 8 × 8 float32 = 4 KiB: 1 KB of spool is too little
    assert spool_bytes(4, [(4, 8, 8)]) == 4096
    # with labels: 4 × (4 KiB / 4 + 64 label pixels × (3 thumbnail + 2 × 3 planes)) bytes
    assert spool_bytes(4, [(4, 8, 8)], label_bytes=label_bytes(64, 3)) == 4 * (1024 + 576)
    small = run(net, broden, tmp_path / "small", top_k=2, spool_gb=1e-6)
    assert seen[0] == PROBE + 8
    big_net = colour_net()
    seen_big = counting(big_net, "conv")
    big = run(big_net, broden, tmp_path / "big", top_k=2, spool_gb=6.4e-6)
    assert seen_big[0] == PROBE + 4  # 6,400 bytes: spooled
    assert comparable(small) == comparable(big)


@pytest.mark.parametrize("stop_at", [1, 5])  # in pass 1, in pass 2 (4 batches each)
def test_cancelled_one_pass_resumes_from_its_spool(broden: Path, tmp_path: Path,  # noqa: F811
                                                   stop_at: int) -> None:
    whole = run(colour_net(), broden, tmp_path / "whole", batch_size=1, top_k=2)
    cancel = threading.Event()
    steps: list[object] = []

    def stop(p: object) -> None:
        steps.append(p)
        if len(steps) == stop_at + 1:
            cancel.set()

    with pytest.raises(Cancelled):
        run(colour_net(), broden, tmp_path / "cut", batch_size=1, top_k=2, progress=stop,
            cancel=cancel, checkpoint_every=100)
    chunks = sorted((tmp_path / "cut" / ".partial").glob("*/spool/*.npz"))
    assert len(chunks) == (stop_at + 1 if stop_at < 4 else 4)
    net = colour_net()
    seen = counting(net, "conv")
    again = run(net, broden, tmp_path / "cut", batch_size=1, top_k=2)
    assert again.resumed
    # the rest of pass 1 only, or no forward at all when pass 2 resumed from the spool
    assert seen[0] == PROBE + (4 - (stop_at + 1) if stop_at < 4 else 0)
    assert comparable(again) == comparable(whole)
    assert_same(tmp_path / "whole", tmp_path / "cut", ["conv"], 4)
    assert not (tmp_path / "cut" / ".partial").exists()


def test_lost_spool_chunks_fall_back_to_a_second_forward(broden: Path,  # noqa: F811
                                                         tmp_path: Path) -> None:
    whole = run(colour_net(), broden, tmp_path / "whole", batch_size=1, top_k=2)
    for stop_at, out in ((1, "in-pass-1"), (5, "in-pass-2")):
        cancel = threading.Event()
        steps: list[object] = []

        def stop(p: object, stop_at: int = stop_at, steps: list[object] = steps,
                 cancel: threading.Event = cancel) -> None:
            steps.append(p)
            if len(steps) == stop_at + 1:
                cancel.set()

        with pytest.raises(Cancelled):
            run(colour_net(), broden, tmp_path / out, batch_size=1, top_k=2, progress=stop,
                cancel=cancel, checkpoint_every=100)
        first = sorted((tmp_path / out / ".partial").glob("*/spool/0000000.npz"))
        assert len(first) == 1
        first[0].unlink()
        net = colour_net()
        seen = counting(net, "conv")
        again = run(net, broden, tmp_path / out, batch_size=1, top_k=2)
        # pass 1: the rest of it, then a second forward over all 4; pass 2: from scratch
        assert seen[0] == PROBE + (4 - (stop_at + 1) + 4 if stop_at < 4 else 4), out
        assert again.resumed == (stop_at < 4), out
        assert comparable(again) == comparable(whole), out
        assert_same(tmp_path / "whole", tmp_path / out, ["conv"], 4)


def test_bundled_model_one_pass_equals_two_passes_on_real_photos(tmp_path: Path) -> None:
    """EfficientNet-Lite0, two layers at different depths, colour concepts of the sample
    photos and one file that does not decode (pass 1 skips it): the same labels and IoUs."""
    from photos import ASSETS

    from app.engine.runtime.models import load_bundled

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted((ASSETS / "samples").glob("*.jpg")):
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    loaded = load_bundled(torch.device("cpu"))
    layers = ["_blocks.1", "_blocks.4"]
    results = []
    for name, budget in (("one", 4.0), ("two", 0.0)):
        results.append(run_job(dissect(loaded, folder, layers, workers=0, batch_size=2,
                                       top_k=3, out=tmp_path / name, spool_gb=budget)))
    one, two = results
    assert len(one.skipped) == 1 and one.images == len(list(folder.iterdir())) - 1
    assert comparable(one) == comparable(two)
    labelled = [u for u in one.layers["_blocks.1"].units if u.category == "color"]
    assert labelled and all(u.iou > 0 for u in labelled)
    assert_same(tmp_path / "one", tmp_path / "two", ["_blocks.1", "_blocks.4"], 40)


def test_spool_setting() -> None:
    assert settings_from_dict({"dissect": {"spool_gb": 0}}).dissect.spool_gb == 0.0
    assert settings_from_dict({}).dissect.spool_gb == 4.0
    with pytest.raises(SettingsError, match=r"\[dissect\].spool_gb must not be negative"):
        settings_from_dict({"dissect": {"spool_gb": -1}})
