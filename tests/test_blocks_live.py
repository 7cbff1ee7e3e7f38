"""The building blocks in the live worker: one explained frame on the real bundled model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.core.results import BuildingBlocks
from app.core.view import BlocksView, ViewState
from app.engine.live.stages import BlocksStage
from app.engine.live.worker import FrameProcessor
from app.engine.runtime.models import load_bundled
from tests.photos import chelsea

LAYER = "_blocks.7"
TABBY, EGYPTIAN = 281, 285


@pytest.fixture(scope="module")
def processor():
    proc = FrameProcessor(load_bundled(torch.device("cpu")), dictionary_top=4, groups=6)
    yield proc
    proc.close()


def test_an_explained_frame_carries_every_block_of_the_shown_layer(processor):
    snap = processor.process(chelsea(), ViewState(layer=LAYER, parts=(BlocksView(True),)))
    e = snap.record(BuildingBlocks)
    assert e is not None and e.layer == LAYER
    assert e.target == snap.predictions[0].index and e.versus is None  # default: the top-1
    assert e.probability == pytest.approx(snap.predictions[0].probability, abs=1e-4)
    c, h, w = processor.by_name[LAYER].shape
    assert e.channels.shape == (c,) and e.spatial.shape == (h, w)
    # both are the same act × grad, summed over positions or over channels
    assert float(e.channels.sum()) == pytest.approx(float(e.spatial.sum()), rel=1e-3, abs=1e-3)
    assert e.dictionary_units.shape == (h, w, 4) and e.group_spatial.shape == (6, h, w)
    assert e.group_channels.shape == (6, c) and (e.group_spatial >= 0).all()
    # the dictionary lists each position's most active channels, most active first
    y, x = 3, 5
    acts = processor.recorder.activations[LAYER][0, :, y, x].numpy()
    assert list(e.dictionary_units[y, x]) == list(np.argsort(-acts, kind="stable")[:4])
    off = processor.process(chelsea(), ViewState(layer=LAYER))
    assert off.record(BuildingBlocks) is None  # only while the blocks are shown


def test_a_picked_class_against_another(processor):
    view = ViewState(layer=LAYER, parts=(BlocksView(True, TABBY, EGYPTIAN),))
    e = processor.process(chelsea(), view).record(BuildingBlocks)
    assert e is not None and (e.target, e.versus) == (TABBY, EGYPTIAN)
    alone = processor.process(chelsea(), ViewState(layer=LAYER, parts=(BlocksView(True, TABBY),))
                              ).record(BuildingBlocks)
    assert alone is not None and not np.allclose(alone.channels, e.channels)
    logits = processor.process(chelsea(), ViewState(layer="logits", parts=(BlocksView(True),)))
    assert logits.record(BuildingBlocks) is None  # 1×1 class units have no positions to explain


def test_the_windows_path_integrated_job_adds_up_to_score_minus_baseline(tmp_path):
    from app.core.requests import IntegratedRequest
    from app.core.settings import Settings
    from app.session.jobs import JobContext, drain, make_job

    loaded = load_bundled(torch.device("cpu"))
    previews, outcome = drain(make_job(JobContext(Settings(), loaded, {}),
                                       IntegratedRequest(chelsea(), LAYER, TABBY, None)))
    done, text = outcome.result, outcome.text
    assert previews == []
    assert done.steps == 100 and done.channels.shape == (processor_channels(loaded),)
    print(f"integrated: score {done.score:.3f}, baseline {done.baseline:.3f}, "
          f"sum {float(done.channels.sum()):.3f}, gap {100 * done.gap:.2f} %")
    assert done.gap < 0.05 and "within" in text  # a 100-step Riemann sum: a few %
    assert float(done.spatial.sum()) == pytest.approx(float(done.channels.sum()), rel=1e-3)


def processor_channels(loaded) -> int:
    from app.engine.runtime.recorder import discover_layers

    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    return next(i for i in layers if i.name == LAYER).shape[0]


@pytest.mark.parametrize("layer", [LAYER, "_blocks.12", "_conv_stem"])
def test_in_the_live_pass_the_blocks_equal_the_second_pass_ones(processor, layer):
    """One backward inside the recorded forward gives what LiveBlocks' private copy gives
    (its batch norms are folded: float rounding apart), and the grid is unchanged."""
    view = ViewState(layer=layer, parts=(BlocksView(True, TABBY, EGYPTIAN),))
    plain = processor.process(chelsea(), ViewState(layer=layer))
    fast = processor.process(chelsea(), view)
    blocks = processor.stage(BlocksStage)
    assert blocks.in_pass
    blocks.in_pass = False
    try:
        slow = processor.process(chelsea(), view)
    finally:
        blocks.in_pass = True
    a, b = fast.record(BuildingBlocks), slow.record(BuildingBlocks)
    assert a is not None and b is not None and (a.target, a.versus) == (b.target, b.versus)
    scale = float(np.abs(b.channels).max())
    np.testing.assert_allclose(a.channels, b.channels, rtol=0, atol=2e-3 * scale)
    # a folded batch norm rounds differently: a rare ReLU6 gate at its edge flips
    close = np.abs(a.spatial - b.spatial) <= 2e-3 * float(np.abs(b.spatial).max())
    assert close.mean() > 0.999, close.mean()
    assert a.score == pytest.approx(b.score, rel=1e-3, abs=1e-3)
    np.testing.assert_array_equal(fast.mosaic, plain.mosaic)  # what the grid shows
    assert [p.index for p in fast.predictions] == [p.index for p in plain.predictions]


def test_the_windows_accentuation_and_inversion_jobs_send_previews_and_results(monkeypatch):
    """The session's wrappers around the engine's jobs, on the real model (few steps)."""
    import functools

    from app.core.requests import AccentuateRequest, InvertRequest
    from app.core.settings import Settings
    from app.engine.analyses import featurevis
    from app.session.jobs import JobContext, drain, frames, make_job

    monkeypatch.setattr(frames, "accentuate",
                        functools.partial(featurevis.accentuate, steps=6, size=64))
    monkeypatch.setattr(frames, "invert",
                        functools.partial(featurevis.invert, steps=6, size=64))
    loaded = load_bundled(torch.device("cpu"))
    context = JobContext(Settings(), loaded, {})
    previews, outcome = drain(make_job(context, AccentuateRequest(chelsea(), "_blocks.4", 3)))
    events, text = [*previews, outcome.result], outcome.text
    final = events[-1]
    assert final.done and final.kind == "accentuate" and final.seed is not None
    assert final.image.shape == (64, 64, 3) and "→" in final.caption and "dB" in text
    assert any(not e.done for e in events)  # previews came first
    events, outcome = drain(make_job(context, InvertRequest(chelsea(),
                                                            ("_blocks.1", "_blocks.4"))))
    assert outcome.result is None  # each layer's final picture came as a step
    finals = [e for e in events if e.done]
    assert [e.layer for e in finals] == ["_blocks.1", "_blocks.4"]
    assert all("code error" in e.caption for e in finals)


def test_the_activation_grid_job_lays_each_position_out_on_the_frames_grid(monkeypatch):
    """Pooled to 16×16 at most, one tile per position, weak positions darker."""
    from app.core.requests import ActivationGridRequest
    from app.core.settings import Settings
    from app.engine.workflows import activation_grid as ag
    from app.session.jobs import JobContext, drain, make_job

    monkeypatch.setattr(ag, "STEPS", 2)
    monkeypatch.setattr(ag, "TILE", 16)
    loaded = load_bundled(torch.device("cpu"))
    previews, outcome = drain(make_job(JobContext(Settings(), loaded, {}),
                                       ActivationGridRequest(chelsea(), "_blocks.2")))
    assert previews and not any(p.done for p in previews)
    final = outcome.result
    assert final.done and final.kind == "activation_grid"
    assert final.image.shape == (16 * 16, 16 * 16, 3)  # 28×28 pooled to 16×16 positions
    tiles = np.ones((4, 2, 2, 3), np.uint8) * 200
    laid = ag.lay_out(tiles, np.array([0.0, 1.0, 2.0, 4.0]), 2, 2)
    assert laid.shape == (4, 4, 3) and laid[0, 0, 0] == 50 and laid[3, 3, 0] == 200


def test_group_icons_are_rendered_once_then_served_from_the_cache(monkeypatch, tmp_path):
    import dataclasses

    from app.core.requests import GroupIconsRequest
    from app.core.settings import Settings
    from app.engine.workflows import activation_grid as ag
    from app.session.jobs import JobContext, drain, make_job

    monkeypatch.setattr(ag, "STEPS", 2)
    monkeypatch.setattr(ag, "ICON", 16)
    s = Settings()
    settings = dataclasses.replace(s, cache=dataclasses.replace(s.cache, dir=str(tmp_path)))
    loaded = load_bundled(torch.device("cpu"))
    directions = np.abs(np.random.default_rng(0).normal(size=(3, 40))).astype(np.float32)
    context = JobContext(settings, loaded, {})
    _, outcome = drain(make_job(context, GroupIconsRequest("_blocks.4", directions)))
    first = outcome.result
    assert len(first.icons) == 3 and first.icons[0].shape == (16, 16, 3)

    def no_render(*_a, **_k):
        raise AssertionError("rendered again")

    monkeypatch.setattr(ag, "Ascent", no_render)
    _, outcome = drain(make_job(context, GroupIconsRequest("_blocks.4", directions * 1.0001)))
    again = outcome.result
    for a, b in zip(again.icons, first.icons, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_blocks_shown_come_from_the_recorded_pass_not_a_second_one(processor,
                                                                      monkeypatch):
    """With nothing deleted the worker's own pass carries the backward (the analyses'
    act × grad helper given the worker's forward): the second pass is never made."""
    import app.engine.live.stages.blocks as stage_module

    def no_second_pass(*_a, **_k):
        raise AssertionError("the second pass ran")

    monkeypatch.setattr(stage_module.LiveBlocks, "process", no_second_pass)
    calls = []
    original = processor.recorder.run
    monkeypatch.setattr(processor.recorder, "run",
                        lambda x, *a: calls.append(1) or original(x, *a))
    snap = processor.process(chelsea(), ViewState(layer=LAYER, parts=(BlocksView(True),)))
    e = snap.record(BuildingBlocks)
    assert e is not None and e.layer == LAYER and len(calls) == 1
    assert processor.errors() == ()
