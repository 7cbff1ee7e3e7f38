"""Where a frame falls on an atlas, live: planted clusters land in their cells, and the
stage on the bundled model places every position of the recorded map."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from app.core.results import AtlasRecord
from app.core.settings import Settings
from app.core.view import AtlasView, ViewState
from app.engine.live.stages.atlas import place, unit_directions
from app.engine.live.worker import FrameProcessor
from app.engine.runtime.directions import write_direction_set
from app.engine.runtime.models import load_model
from tests.photos import chelsea, coffee

CPU = torch.device("cpu")


def planted(seed: int = 0, cells: int = 6, channels: int = 40, h: int = 7, w: int = 9):
    """Cells far apart (positive, like post-ReLU activations, so cosines are not trivial),
    and a map whose each position is a scaled cell plus 5 % noise; a few positions are 0."""
    rng = np.random.default_rng(seed)
    centres = rng.random((cells, channels)) ** 4 * 3  # sparse-ish positive directions
    truth = rng.integers(0, cells, size=(h, w))
    scale = rng.uniform(0.3, 4.0, size=(h, w))
    acts = centres[truth] * scale[..., None]
    acts += 0.05 * np.linalg.norm(acts, axis=-1, keepdims=True) * rng.standard_normal(
        acts.shape) / np.sqrt(channels)
    acts = np.maximum(acts, 0)
    truth[0, :3] = -1
    acts[0, :3] = 0
    return centres, truth, np.ascontiguousarray(acts.transpose(2, 0, 1), dtype=np.float32)


def test_planted_positions_land_in_their_cells_weighted_by_their_norms():
    centres, truth, acts = planted()
    weights, cell_of = place(torch.from_numpy(acts),
                             unit_directions(torch.from_numpy(centres).float()))
    assert np.array_equal(cell_of.numpy(), truth)
    norms = np.linalg.norm(acts, axis=0)
    expected = np.array([norms[truth == k].sum() for k in range(centres.shape[0])])
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-5)


def test_nearest_is_by_angle_not_by_length():
    # (9, 1) is 5.1 from cell 1 and 8.1 from cell 0, but at 6° from cell 0 and 31° from 1
    cells = torch.tensor([[1.0, 0.0], [8.0, 6.0]])
    acts = torch.tensor([[9.0], [1.0]])[:, :, None]  # (C=2, H=1, W=1)
    _weights, cell_of = place(acts, unit_directions(cells))
    assert int(cell_of[0, 0]) == 0


@pytest.mark.slow
def test_the_live_stage_places_the_recorded_map_on_the_cells(tmp_path):
    loaded = load_model("efficientnet_lite0", CPU, Settings().model)
    proc = FrameProcessor(loaded)
    layer = "_blocks.11"
    try:
        proc.process(coffee(), ViewState(layer=layer))
        other = proc.recorder.activations[layer][-1].clone()
        proc.process(chelsea(), ViewState(layer=layer))
        cat = proc.recorder.activations[layer][-1].clone()
        # cells: two positions of the cat's map and two of the coffee's, as the atlas's
        # means would be; each position the cells were made of must land in its own cell
        picks = [(cat, 3, 3), (cat, 0, 6), (other, 5, 1), (other, 2, 2)]
        cells = np.stack([a[:, y, x].numpy() for a, y, x in picks])
        folder = tmp_path / "cells"
        write_direction_set(folder, cells, [f"cell {i}" for i in range(4)],
                            {"kind": "linear", "source_layer": layer,
                             "direction_layer": f"{layer}@atlas2"})
        view = ViewState(layer="_blocks.5", parts=(AtlasView(layer, str(folder)),))
        snap = proc.process(chelsea(), view)
        rec = snap.record(AtlasRecord)
        assert rec is not None and rec.layer == layer and rec.folder == str(folder)
        c, h, w = cat.shape
        assert rec.cell_of.shape == (h, w) and rec.weights.shape == (4,)
        assert rec.cell_of[3, 3] == 0 and rec.cell_of[0, 6] == 1
        # independently: cosine of every position with every cell, in float64
        flat = cat.reshape(c, -1).T.double().numpy()
        cos = flat @ cells.T.astype(np.float64) / np.linalg.norm(cells, axis=1)
        norms = np.linalg.norm(flat, axis=1)
        best = np.where(norms > 0, cos.argmax(1), -1)
        assert np.array_equal(rec.cell_of.reshape(-1), best)
        np.testing.assert_allclose(
            rec.weights, [norms[best == k].sum() for k in range(4)], rtol=1e-4)
        # off without the view part
        assert proc.process(chelsea(), ViewState(layer=layer)).record(AtlasRecord) is None
        # its cost per frame beside the frame's (a rough figure; the machine is shared)
        stage_ms, frame_ms = [], []
        for _ in range(5):
            began = time.perf_counter()
            s = proc.process(chelsea(), view)
            frame_ms.append((time.perf_counter() - began) * 1000)
            r = s.record(AtlasRecord)
            assert r is not None
            stage_ms.append(r.ms)
        print(f"atlas placement {np.median(stage_ms):.2f} ms of a {np.median(frame_ms):.1f} ms "
              f"frame at {layer} ({h}×{w} positions, 4 cells)")
    finally:
        proc.close()


@pytest.mark.slow
def test_the_session_job_makes_the_atlas_its_icons_and_its_direction_layer(tmp_path,
                                                                           monkeypatch):
    import dataclasses
    import json

    from skimage import data as skdata

    import app.session.jobs.atlas as atlas_jobs
    from app.core.atlas_messages import AtlasReady
    from app.core.requests import AtlasRequest, CachedAtlasRequest
    from app.core.settings import CacheSettings
    from app.engine.runtime.cache import model_key
    from app.engine.runtime.directions import direction_sets, load_direction_set
    from app.session.jobs import JobContext, Refused, drain, make_job
    from tests.photos import write_jpeg

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        write_jpeg(photos / f"{name}.jpg", getattr(skdata, name)())
    loaded = load_model("efficientnet_lite0", CPU, Settings().model)
    cache = tmp_path / "cache"
    settings = dataclasses.replace(Settings(), cache=CacheSettings(str(cache)))
    monkeypatch.setattr(atlas_jobs, "ICON_STEPS", 2)
    monkeypatch.setattr(atlas_jobs, "ICON_SIZE", 32)
    ctx = JobContext(settings, loaded, {"_blocks.5": 80, "_blocks.8": 112})
    previews, outcome = drain(make_job(ctx, AtlasRequest(str(photos), "_blocks.5", 6)))
    message = outcome.result
    assert isinstance(message, AtlasReady) and message.icons_done
    # the first look, before the icons: the same cells, no icons
    (first,) = [p for p in previews if isinstance(p, AtlasReady)]
    assert not first.icons_done and all(c.icon is None for c in first.cells)
    assert [(c.x, c.y, c.count) for c in first.cells] == [(c.x, c.y, c.count)
                                                          for c in message.cells]
    # what the message says is what the atlas's files hold
    folder = next((cache / "atlas").glob("*/_blocks.5/atlas-*"))
    stored = json.loads((folder / "cells.json").read_text())
    assert [(c.x, c.y, c.count, c.label) for c in message.cells] == [
        (d["x"], d["y"], d["count"], d["label"]) for d in stored] and stored
    assert all(c.icon is not None and c.icon.shape == (32, 32, 3) for c in message.cells)
    assert all(1 <= len(c.examples) <= 3 and c.examples[0].shape == (64, 64, 3)
               for c in message.cells)  # its top samples, cut from the photos
    assert all(c.icon_path == str(folder / d["icon"]) for c, d in zip(message.cells, stored,
                                                                       strict=True))
    # the cells are the direction layer the message names, found where the live view looks
    assert message.direction_layer == "_blocks.5@atlas6" == outcome.text.split()[-1]
    cells = load_direction_set(message.directions_folder)
    assert cells is not None and cells.kind == "linear"
    assert np.array_equal(cells.directions, np.load(folder / "directions.npy"))
    assert cells.names[0] == f"cell ({stored[0]['x']},{stored[0]['y']}): {stored[0]['label']}"
    assert "_blocks.5@atlas6" in direction_sets(cache, model_key(loaded))
    # opening the tab later finds it, icons and all; a layer without one has no result
    _, cached = drain(make_job(ctx, CachedAtlasRequest("_blocks.5")))
    assert isinstance(cached.result, AtlasReady)
    assert cached.result.directions_folder == message.directions_folder
    assert all(np.array_equal(a.icon, b.icon) for a, b in zip(
        cached.result.cells, message.cells, strict=True))
    assert drain(make_job(ctx, CachedAtlasRequest("_blocks.8")))[1].result is None
    with pytest.raises(Refused, match="no layer 'nope'"):
        make_job(ctx, AtlasRequest(str(photos), "nope", 6))
    with pytest.raises(Refused, match="folder not found"):
        make_job(ctx, AtlasRequest(str(tmp_path / "none"), "_blocks.5", 6))
