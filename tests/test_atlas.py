"""The activation atlas: layout and grid on planted clusters, locate, and the command."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from photos import write_photo_folder

from app.engine.analyses.atlas import bin_layout, label_cells, locate, umap_layout

CHANNELS = 24


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray]:
    """Four well-separated clusters of 60 vectors (cosine-separated: distinct directions)."""
    rng = np.random.default_rng(7)
    centres = np.eye(CHANNELS)[[0, 6, 12, 18]] * 10.0 + 1.0
    vectors = np.concatenate([c + rng.normal(scale=0.5, size=(60, CHANNELS)) for c in centres])
    return vectors.astype(np.float32), np.repeat(np.arange(4), 60)


@pytest.fixture(scope="module")
def layout(planted: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return umap_layout(planted[0], seed=0)


def test_layout_keeps_planted_clusters_in_separate_cells(planted, layout):
    vectors, cluster = planted
    grid = bin_layout(vectors, layout, size=10, min_count=1)
    for cell in range(grid.cells.shape[0]):
        members = cluster[grid.cell_of == cell]
        assert len(set(members.tolist())) == 1, f"cell {cell} mixes clusters {set(members)}"
    # and the clusters really are spread over the map, not piled into one cell each by luck
    assert len({tuple(grid.cells[c]) for c in grid.cell_of}) >= 4


def test_each_cell_direction_is_the_mean_of_its_members(planted, layout):
    vectors, _ = planted
    grid = bin_layout(vectors, layout, size=10, min_count=3)
    assert grid.cells.shape[0] > 0
    for cell in range(grid.cells.shape[0]):
        members = vectors[grid.cell_of == cell]
        assert members.shape[0] == grid.counts[cell] >= 3
        np.testing.assert_allclose(grid.directions[cell], members.mean(axis=0), rtol=1e-5,
                                   atol=1e-5)


def test_cells_below_the_minimum_density_are_empty():
    # hand-made layout: a 2×2 grid with 5, 2, 3 and 1 samples in its cells
    xy = np.array([[0.1, 0.1]] * 5 + [[0.9, 0.1]] * 2 + [[0.1, 0.9]] * 3 + [[0.9, 0.9]])
    vectors = np.arange(11 * 3, dtype=np.float32).reshape(11, 3)
    grid = bin_layout(vectors, xy, size=2, min_count=3)
    assert sorted(map(tuple, grid.cells.tolist())) == [(0, 0), (0, 1)]
    assert sorted(grid.counts.tolist()) == [3, 5]
    assert (grid.cell_of[5:7] == -1).all() and grid.cell_of[10] == -1
    np.testing.assert_allclose(grid.directions[0], vectors[:5].mean(axis=0))


def test_locate_puts_a_training_sample_in_the_cell_that_holds_it(planted, layout):
    vectors, _ = planted
    grid = bin_layout(vectors, layout, size=10, min_count=3)
    held = np.flatnonzero(grid.cell_of >= 0)
    np.testing.assert_array_equal(locate(grid, vectors, vectors[held]), grid.cell_of[held])


def test_a_cells_label_is_the_class_its_direction_raises_most():
    jacobian = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    labels = label_cells(np.array([[3.0, 1.0], [0.1, 1.0]]), np.array([5, 9, 2]), jacobian,
                         [f"class {i}" for i in range(10)])
    assert labels == [("class 5", 3.0), ("class 9", 2.0)]


# -- the command, on the bundled model and real photos -----------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photo_folder(tmp_path_factory.mktemp("photos"))


def test_cli_writes_the_atlas_files_on_real_photos(tmp_path, capsys, photos):
    import app.cli as cli

    out = tmp_path / "atlas"
    argv = ["atlas", str(photos), "--layer", "_blocks.5", "--grid", "6", "--per-image", "48",
            "--gradient-images", "2", "--icon-steps", "4", "--icon-size", "48",
            "--device", "cpu", "--out", str(out),
            "--locate", str(photos / "coffee.png"), "--json"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    files = json.loads((out / "cells.json").read_text())
    directions = np.load(out / "directions.npy", allow_pickle=False)
    assert (out / "atlas.png").is_file() and cv2.imread(str(out / "atlas.png")).shape[:2] == (
        6 * 48, 6 * 48)
    assert doc["cells"] == files and len(files) == directions.shape[0] > 0
    assert directions.shape[1] == 80  # _blocks.5's channels
    assert sum(c["count"] for c in files) <= 4 * 48
    import torch

    from app.engine.runtime.models import load_bundled

    names = set(load_bundled(torch.device("cpu")).class_names)
    for cell in files:
        assert {"x", "y", "count", "icon", "label", "score"} <= cell.keys()
        assert 0 <= cell["x"] < 6 and 0 <= cell["y"] < 6 and cell["count"] >= 3
        assert cell["label"] in names
        icon = cv2.imread(str(out / cell["icon"]))
        assert icon is not None and icon.shape == (48, 48, 3) and icon.std() > 0
    (located,) = doc["located"]
    assert located["image"].endswith("coffee.png")
    # every position of _blocks.5's 14×14 map (a 224 input) lands in some populated cell
    assert sum(c["positions"] for c in located["cells"]) == 14 * 14
    on_map = {(c["x"], c["y"]) for c in files}
    assert all((c["x"], c["y"]) in on_map for c in located["cells"])
    # the cells are a direction layer too: one linear unit per cell, named by its place and label
    from app.engine.runtime.directions import load_direction_set

    assert doc["direction_layer"] == "_blocks.5@atlas6" and doc["directions"] == str(
        out / "cells")
    cells = load_direction_set(out / "cells")
    assert cells is not None and cells.name == "_blocks.5@atlas6" and cells.kind == "linear"
    assert cells.source == "_blocks.5" and np.array_equal(cells.directions, directions)
    assert cells.names == tuple(f"cell ({c['x']},{c['y']}): {c['label']}" for c in files)

    # a second run is served from the folder
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True


@pytest.mark.parametrize("extra, fragment", [
    (["--grid", "0"], "--grid must be positive"),
    (["--layer", "nope"], "no layer named 'nope'"),
    (["--locate", "/no/such.png"], "image to locate not found"),
    (["--icon-steps", "-1"], "--icon-steps must be 0 or more"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, photos, extra, fragment):
    import app.cli as cli

    argv = ["atlas", str(photos), "--layer", "_blocks.5", "--device", "cpu",
            "--out", str(tmp_path / "o"), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err


def test_a_samples_position_is_recovered_and_its_cells_examples_are_cut_and_kept(
        tmp_path, photos, monkeypatch):
    import torch

    from app.core.jobs import run_job
    from app.engine.analyses.atlas import build_atlas, cell_examples, sample_positions
    from app.engine.analyses.atlas import examples as examples_module
    from app.engine.analyses.atlas.collect import batches, recorder_for
    from app.engine.runtime.models import load_bundled

    loaded = load_bundled(torch.device("cpu"))
    atlas = run_job(build_atlas(loaded, photos, "_blocks.5", grid=4, per_image=24, min_count=2,
                                gradient_images=1, seed=3, out=tmp_path / "a"))
    with np.load(atlas.folder / "samples.npz") as z:
        owner = z["owner"]
    pos = sample_positions(owner, atlas.seed, 14 * 14, atlas.per_image)
    # independently: each image's map, recorded again, holds each sample at its position
    files = json.loads((atlas.folder / "meta.json").read_text())["files"]
    rec, forward, unhook = recorder_for(loaded, "_blocks.5", False)
    try:
        with torch.no_grad():
            for ids, x in batches(loaded, files, 4, 80_000_000, 1280, []):
                rec.run(x, forward)
                acts = rec.activations["_blocks.5"].float().numpy()
                for k, image in enumerate(ids):
                    mine = np.flatnonzero(owner == image)
                    assert mine.size == 24
                    np.testing.assert_allclose(
                        atlas.samples[mine], acts[k].reshape(80, -1)[:, pos[mine]].T,
                        rtol=1e-4, atol=1e-5)
    finally:
        unhook()
        rec.remove()
    crops = run_job(cell_examples(loaded, atlas, k=2, size=32))
    assert set(crops) == set(range(len(atlas.cells)))
    for i, cell in enumerate(atlas.cells):
        assert 1 <= len(crops[i]) <= min(2, cell.count)
        assert all(c.shape == (32, 32, 3) and c.dtype == np.uint8 and c.std() > 0
                   for c in crops[i])
    # a second look reads them from beside the atlas: no image is opened
    def no_reading(*_a, **_k):
        raise AssertionError("an image was read again")

    monkeypatch.setattr(examples_module, "read_image", no_reading)
    again = run_job(cell_examples(loaded, atlas, k=2, size=32))
    assert all(np.array_equal(a, b) for i in crops for a, b in zip(crops[i], again[i],
                                                                   strict=True))


def test_whitening_turns_a_direction_away_from_the_layers_shared_variance():
    """S d with S the inverse second moments: on samples spread 10× more along x than y,
    the whitened (1, 1) points mostly along y (0.01 : 1, by the formula), with d's norm."""
    from app.engine.workflows.atlas_icons import whitened

    rng = np.random.default_rng(0)
    samples = rng.normal(size=(20000, 2)) * np.array([10.0, 1.0])
    d = np.array([[1.0, 1.0]], np.float32) / np.sqrt(2)
    w = whitened(d, samples, ridge=0.0)[0]
    moments = samples.T @ samples / len(samples)
    expected = np.linalg.inv(moments) @ d[0]
    assert np.dot(w, expected) / (np.linalg.norm(w) * np.linalg.norm(expected)) > 0.9999
    assert abs(w[0] / w[1] - 0.01) < 0.002
    assert np.linalg.norm(w) == pytest.approx(1.0, rel=1e-5)
    # with the ridge, a layer whose samples span fewer dimensions than its channels
    flat = np.zeros((100, 3))
    flat[:, 0] = rng.normal(size=100)
    assert np.isfinite(whitened(np.eye(3, dtype=np.float32), flat)).all()


@pytest.mark.slow
def test_icons_activate_their_cells_direction_and_neighbours_are_alike(tmp_path):
    """On the bundled model and real photos: each icon, run through the model, points the
    layer along its cell's direction more than 9 in 10 real positions do (cosine, at the
    icon's best position); neighbouring cells' directions are more alike than random pairs."""
    import torch
    from skimage import data as skdata

    from app.core.jobs import run_job
    from app.engine.analyses.atlas import build_atlas
    from app.engine.runtime.models import load_bundled
    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
    from app.engine.runtime.recorder import ActivationRecorder
    from app.engine.workflows.atlas_icons import render_icons

    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "astronaut", "rocket", "camera", "coins",
                 "immunohistochemistry", "hubble_deep_field"):
        img = getattr(skdata, name)()
        img = np.dstack([img] * 3) if img.ndim == 2 else img[..., :3]
        h, w = img.shape[:2]
        for j in range(3):  # three crops each: 24 images
            s = min(h, w) * 2 // 3
            y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
            crop = np.ascontiguousarray(img[y:y + s, x:x + s])
            cv2.imwrite(str(folder / f"{name}{j}.jpg"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    loaded = load_bundled(torch.device("cpu"))
    layer = "_blocks.8"
    atlas = run_job(build_atlas(loaded, folder, layer, grid=6, out=tmp_path / "atlas"))
    assert len(atlas.cells) >= 10
    icons = run_job(render_icons(loaded, atlas, steps=64, size=96))

    def cosines(vectors: np.ndarray, d: np.ndarray) -> np.ndarray:
        return vectors @ d / np.maximum(np.linalg.norm(vectors, axis=1), 1e-9)

    unit = atlas.directions / np.linalg.norm(atlas.directions, axis=1, keepdims=True)
    rec = ActivationRecorder(loaded.module).__enter__()
    try:
        above = 0
        for i in range(len(atlas.cells)):
            with torch.no_grad():
                rec.run(prepare_batch([frame_to_tensor(icons[i], loaded.device)],
                                      loaded.preprocess))
            a = rec.activations[layer][-1].float().numpy()
            best = cosines(a.reshape(a.shape[0], -1).T, unit[i]).max()
            above += best > np.quantile(cosines(atlas.samples, unit[i]), 0.9)
    finally:
        rec.remove()
    assert above >= 0.8 * len(atlas.cells), (above, len(atlas.cells))
    # neighbours (grid distance 1) against every pair
    xy = np.array([(c.x, c.y) for c in atlas.cells])
    sims = unit @ unit.T
    near = [sims[i, j] for i in range(len(xy)) for j in range(i + 1, len(xy))
            if np.abs(xy[i] - xy[j]).max() == 1]
    pairs = sims[np.triu_indices(len(xy), 1)]
    assert near and np.mean(near) > np.mean(pairs) + 0.05, (np.mean(near), np.mean(pairs))
