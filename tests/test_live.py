"""The live pipeline on the real bundled model: processor, worker thread, session."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from app.core.messages import Frame, ModelReady, Normalization, Notice, NoticeLevel, SourceReady
from app.core.results import AttributionRecord, DeletionRecord, LiveTopRecord
from app.core.settings import Settings
from app.core.slot import LatestSlot
from app.core.view import AttributionView, ColourView, DeletionView, ViewState
from app.engine.live.stages import DeletionStage
from app.engine.live.worker import FrameProcessor, InferenceWorker
from app.engine.runtime.models import load_model
from tests.photos import CAT_CLASSES, COFFEE_CLASSES, chelsea, coffee, write_jpeg
from tests.waiting import collect_events, next_result

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def processor():
    proc = FrameProcessor(load_model("efficientnet_lite0", CPU, Settings().model))
    yield proc
    proc.close()


def test_processor_classifies_real_photos(processor):
    cat = processor.process(chelsea(), ViewState())
    assert cat.predictions[0].index in CAT_CLASSES
    assert len(cat.predictions) == 5
    assert sum(p.probability for p in cat.predictions) <= 1.0 + 1e-6
    cup = processor.process(coffee(), ViewState())
    assert cup.predictions[0].index in COFFEE_CLASSES


def test_processor_snapshot_matches_the_recorded_layer(processor):
    layer = "_blocks.3._depthwise_conv"
    snap = processor.process(chelsea(), ViewState(layer=layer, unit=7))
    acts = processor.recorder.activations[layer][0]
    c, h, w = acts.shape
    assert snap.layer == layer and snap.unit == 7
    assert (snap.geometry.channels, snap.geometry.tile_h, snap.geometry.tile_w) == (c, h, w)
    assert snap.mosaic.shape == (snap.geometry.height, snap.geometry.width)
    assert snap.mosaic.dtype == np.uint8
    np.testing.assert_allclose(snap.unit_map, acts[7].numpy())
    np.testing.assert_allclose(snap.unit_max, acts.flatten(1).amax(1).numpy(), rtol=1e-6)
    # the selected unit's tile holds its own map, scaled to 0..255
    y, x = snap.geometry.tile_origin(7)
    tile = snap.mosaic[y : y + h, x : x + w]
    if snap.unit_map.max() > snap.unit_map.min():
        assert tile.max() == 255 and tile.min() == 0
        assert np.unravel_index(tile.argmax(), tile.shape) == np.unravel_index(
            snap.unit_map.argmax(), snap.unit_map.shape)
    # the crop box is the central square the model sees
    hh, ww = chelsea().shape[:2]
    x0, _, cw, ch = snap.crop
    assert cw == ch == round(min(hh, ww) * processor.loaded.preprocess.crop_fraction)
    assert abs((x0 + cw / 2) - ww / 2) <= 1


def test_processor_per_layer_normalization_and_unknown_layer(processor):
    snap = processor.process(chelsea(), ViewState(layer="nope", unit=10_000,
                                                  normalization=Normalization.PER_LAYER))
    assert snap.layer == processor.default_layer
    assert snap.unit == processor.by_name[snap.layer].shape[0] - 1
    assert snap.mosaic.max() == 255


def test_every_layer_is_hooked_and_each_frame_keeps_what_it_shows(processor):
    """All layers stay hooked (any can be shown on the next frame); a frame keeps the
    shown layer's map (and what stages read), not all 150 of them."""
    names = [info.name for info in processor.layers]
    assert len(names) > 100
    assert len(processor.recorder._handles) >= len(names) - 1  # logits: the output's hook
    for layer in (names[3], processor.default_layer, names[-2]):
        processor.process(coffee(), ViewState(layer=layer))
        kept = processor.recorder.activations
        assert layer in kept and kept[layer].device.type == "cpu"
        assert len(kept) <= 3, sorted(kept)  # the shown layer, the logits
    # recording everything is still one setting away (what a caller that wants all sets)
    processor.recorder.keep = None
    with torch.no_grad():
        processor.recorder.run(torch.zeros(1, 3, 224, 224))
    assert set(names) <= set(processor.recorder.activations)


def test_worker_thread_latest_wins_and_rerenders_on_view_change(processor):
    # the worker owns (and unhooks on stop) the processor it is given: give it its own
    processor = FrameProcessor(processor.loaded)
    frames: LatestSlot[Frame] = LatestSlot()
    results = LatestSlot()
    errors: list[str] = []
    worker = InferenceWorker(frames, results, on_error=errors.append)
    frames.listener = worker.poke
    worker.set_model(processor)
    worker.start()
    try:
        for i in range(4):  # no consumer yet: older frames are dropped, never queued
            frames.put(Frame(chelsea(), i, time.perf_counter(), "test"))
        r = results.wait_take(30.0)
        assert r is not None and r.predictions[0].index in CAT_CLASSES
        assert r.dropped_frames >= 1
        assert r.latency_ms >= r.compute_ms > 0
        # a view change re-renders the last frame without a new one
        worker.set_view(ViewState(layer="_blocks.1", unit=3))
        deadline = time.monotonic() + 30
        r2 = None
        while time.monotonic() < deadline:
            r2 = results.wait_take(1.0)
            if r2 is not None and r2.layer == "_blocks.1":
                break
        assert r2 is not None and r2.layer == "_blocks.1" and r2.unit == 3
        assert r2.frame.index == 3  # the newest frame
    finally:
        worker.stop()
        worker.join(10)
    assert not worker.is_alive()
    assert not errors
    assert not processor.recorder.hooked  # the worker took its hooks off on the way out


def test_session_end_to_end_on_an_image_and_bad_inputs(tmp_path):
    from app.session.live import LiveSession

    cat = write_jpeg(tmp_path / "cat.jpg", chelsea())
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    session = LiveSession(Settings(), CPU)
    try:
        session.load_model("efficientnet_lite0")
        session.open_source(str(cat))
        events = collect_events(session, lambda ev: any(isinstance(e, SourceReady) for e in ev)
                                and any(isinstance(e, ModelReady) for e in ev))
        ready = next(e for e in events if isinstance(e, ModelReady))
        assert ready.num_classes == 1000 and ready.default_layer
        result = next_result(session)
        assert result.predictions[0].index in CAT_CLASSES
        assert result.frame.source.endswith("cat.jpg")
        # bad inputs: one error notice each, and the session keeps running
        session.open_source(str(bad))
        session.load_model("no_such_model")
        events = collect_events(session, lambda ev: sum(
            isinstance(e, Notice) and e.level == NoticeLevel.ERROR for e in ev) >= 2)
        errors = [e.text for e in events if isinstance(e, Notice) and e.level == "error"]
        assert any("broken.jpg" in t for t in errors)
        assert any("no_such_model" in t for t in errors)
        assert all("\n" not in t for t in errors)
        session.set_view(ViewState(layer="_blocks.2", unit=1))
        r = next_result(session, lambda r: r.layer == "_blocks.2", timeout=30)
        assert r.layer == "_blocks.2"
    finally:
        session.stop()
    assert not session.worker.is_alive()


def test_freezing_pauses_the_capture_so_no_frames_are_dropped():
    """Frozen, the worker takes no frames: a capture reading on would count thousands of
    frames as dropped. The session pauses it while frozen and resumes it after."""
    from app.session.live import LiveSession, sample_video

    session = LiveSession(Settings(), CPU)
    try:
        session.load_model("efficientnet_lite0")
        session.open_source(str(sample_video()))
        collect_events(session, lambda ev: any(isinstance(e, SourceReady) for e in ev)
                       and any(isinstance(e, ModelReady) for e in ev))
        next_result(session, lambda r: not r.frozen)
        session.set_view(ViewState(frozen=True))
        first = next_result(session, lambda r: r.frozen)
        # re-render the frozen frame for about a second (25 video frames would be read)
        t0, unit, last = time.monotonic(), 0, first
        while time.monotonic() - t0 < 1.2:
            unit = 1 - unit
            session.set_view(ViewState(unit=unit, frozen=True))
            last = next_result(session, lambda r, u=unit: r.frozen and r.unit == u)
        assert last.dropped_frames - first.dropped_frames <= 1
        assert last.frame is first.frame
        session.set_view(ViewState(frozen=False))
        fresh = next_result(session, lambda r: not r.frozen and r.frame is not first.frame,
                            timeout=30)
        assert fresh.fps >= 0
    finally:
        session.stop()


def test_session_auto_source_without_camera_falls_back_to_the_sample_video():
    from app.session.live import LiveSession

    session = LiveSession(Settings(), CPU)
    try:
        session.open_source("auto")
        events = collect_events(session, lambda ev: any(isinstance(e, SourceReady) for e in ev))
    finally:
        session.stop()
    ready = next(e for e in events if isinstance(e, SourceReady))
    assert ready.kind in ("camera", "video")
    if ready.kind == "video":  # this machine has no camera: say so
        assert any(isinstance(e, Notice) and "no camera" in e.text for e in events)


def test_the_sample_video_ships_inside_the_package():
    """Without a camera the app plays the sample video: it must be in the wheel too, not
    only in a source checkout (package data under app/, listed in pyproject.toml)."""
    import tomllib
    from pathlib import Path

    import app
    from app.session.live import sample_video

    video = sample_video()
    package = Path(app.__file__).resolve().parent
    assert video.is_file() and video.is_relative_to(package)
    pyproject = tomllib.loads((package.parent / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["package-data"]["app"]
    assert video.relative_to(package).as_posix() in shipped


def test_rate_meter_counts_a_window_and_falls_to_zero_when_still():
    from app.engine.live.worker import RateMeter

    meter = RateMeter(window_s=1.0)
    rates = [meter.tick(t * 0.1) for t in range(11)]  # 10 per second for 1 s
    assert rates[0] == 0.0
    assert rates[-1] == pytest.approx(10.0)
    assert meter.rate(1.05) == pytest.approx(10.0, rel=0.15)
    assert meter.rate(5.0) == 0.0  # nothing new for longer than the window


def test_processor_attribution_and_live_ablation_on_a_real_photo(processor):
    from app.core.messages import AttributionMode

    layer = "_blocks.8"
    base = processor.process(chelsea(), ViewState(layer=layer, unit=3))
    assert base.record(AttributionRecord) is None and base.record(DeletionRecord) is None
    # attribution of the unit: a saliency over the model's input, not blank
    for mode in (AttributionMode.GRADIENT, AttributionMode.GUIDED):
        snap = processor.process(chelsea(), ViewState(layer=layer, unit=3,
                                                      parts=(AttributionView(mode),)))
        size = processor.loaded.preprocess.size
        rec = snap.record(AttributionRecord)
        assert rec is not None and rec.saliency.shape == (size, size) and rec.mode == mode
        assert rec.saliency.dtype == np.uint8 and rec.saliency.max() == 255
        assert rec.ms > 0
    # delete the layer's strongest units on this image: the top-1 probability drops
    strongest = tuple(int(u) for u in np.argsort(base.unit_max)[::-1][:40])
    ablated = processor.process(chelsea(), ViewState(
        layer=layer, unit=3, parts=(DeletionView(((layer, strongest),)),)))
    deletion = ablated.record(DeletionRecord)
    assert deletion is not None
    assert [p.index for p in deletion.intact] == [p.index for p in base.predictions]
    top = base.predictions[0]
    after = {p.index: p.probability for p in ablated.predictions}
    assert after.get(top.index, 0.0) < top.probability - 0.1
    # the grid shows the ablated layer: deleted units are flat zero
    assert ablated.unit_max[list(strongest)].max() == 0.0
    # restoring gives the intact network back exactly
    restored = processor.process(chelsea(), ViewState(layer=layer, unit=3))
    assert restored.record(DeletionRecord) is None
    assert [(p.index, round(p.probability, 6)) for p in restored.predictions] == \
        [(p.index, round(p.probability, 6)) for p in base.predictions]


def test_live_top_k_follows_fresh_frames_only(processor):
    layer, unit = "_blocks.4", 2
    view = ViewState(layer=layer, unit=unit)
    def patches(snap):
        rec = snap.record(LiveTopRecord)
        assert rec is not None  # always on
        return rec.patches

    first = processor.process(chelsea(), view, frame_id=1000)
    assert 1 <= len(patches(first)) <= 9
    assert patches(first)[0].source == "frame 1000"
    assert patches(first)[0].image.dtype == np.uint8 and patches(first)[0].image.shape[2] == 3
    # a re-render of the same frame adds nothing and hands the GUI the very same tuple
    again = processor.process(chelsea(), view)
    assert patches(again) is patches(first)
    second = processor.process(coffee(), view, frame_id=1001)
    values = [p.value for p in patches(second)]
    assert values == sorted(values, reverse=True)
    assert {p.source for p in patches(second)} <= {"frame 1000", "frame 1001"}
    # the best value is the unit's max on the better of the two frames
    best = max(first.unit_max[unit], second.unit_max[unit])
    assert values[0] == pytest.approx(float(best), rel=1e-5)


def test_live_ablation_in_one_forked_pass_equals_two_passes(processor):
    """The worker gets intact and ablated predictions from one pass with the batch doubled
    at the deleted layer; the result must be what two separate passes give."""
    base = processor.process(chelsea(), ViewState(layer="_blocks.4", unit=0))
    deleted = (("_blocks.4", (0, 3, 7, 12)), ("_blocks.8", (5, 9)))
    above = ViewState(layer="_blocks.11", unit=2, parts=(DeletionView(deleted),))  # above it

    def run(two_passes: bool):
        processor.stage(DeletionStage).fork = not two_passes
        calls = []
        original = processor.recorder.run
        processor.recorder.run = lambda x, *a: calls.append(x.shape[0]) or original(x, *a)
        try:
            return processor.process(chelsea(), above), calls
        finally:
            processor.recorder.run = original

    forked, forked_calls = run(two_passes=False)
    twice, twice_calls = run(two_passes=True)
    assert len(forked_calls) == 1 and len(twice_calls) == 2
    probs = lambda preds: [(p.index, round(p.probability, 4)) for p in preds]  # noqa: E731
    assert probs(forked.predictions) == probs(twice.predictions)
    intact = lambda snap: snap.record(DeletionRecord).intact  # noqa: E731
    assert probs(intact(forked)) == probs(intact(twice))
    assert probs(intact(forked)) == probs(base.predictions)
    assert probs(forked.predictions) != probs(base.predictions)  # the deletions matter
    # the grid above the fork shows the ablated network's activations, not the intact ones
    np.testing.assert_allclose(forked.unit_max, twice.unit_max, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(forked.unit_map, twice.unit_map, rtol=1e-4, atol=1e-4)
    processor.process(chelsea(), ViewState(layer="_blocks.4", unit=0))  # restore for others


def test_a_fork_that_fails_falls_back_to_two_passes_counting_the_frame_once():
    """Deleting units on two parallel branches cannot fork (the second branch never sees the
    doubled batch): the worker must give the two-pass result, and mean mode's running
    statistics must take this frame in once, not once per attempt."""
    from torch import nn

    from app.core.messages import AblationMode
    from app.engine.live.worker import FrameProcessor
    from app.engine.runtime.models import LoadedModel
    from app.engine.runtime.preprocess import Preprocess

    class Branches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.stem = nn.Conv2d(3, 4, 3, padding=1)
            self.a, self.b = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.stem(x)
            return self.fc(self.pool(self.a(y) + self.b(y)).flatten(1))

    loaded = LoadedModel("branches", Branches().eval(),
                         Preprocess(16, 1.0, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
                         tuple(f"c{i}" for i in range(5)), CPU)
    p = FrameProcessor(loaded)
    image = chelsea()
    deleted = (("a", (0,)), ("b", (1,)))
    mean = DeletionView(mode=AblationMode.MEAN)
    view = ViewState(layer="a", unit=0, parts=(DeletionView(deleted, AblationMode.MEAN),))
    p.process(image, ViewState(layer="a", unit=0, parts=(mean,)))
    snap = p.process(image, view)
    deletion = p.stage(DeletionStage)
    assert deletion.fork_refused == deleted  # the fork was tried and refused
    # "a" was watched on the first frame too; each frame counts once (not once per attempt)
    assert deletion.ablation.means.count("a") == 2 and deletion.ablation.means.count("b") == 1
    intact = p.process(image, ViewState(layer="a", unit=0, parts=(mean,)))
    assert [q.index for q in snap.record(DeletionRecord).intact] == [
        q.index for q in intact.predictions]


def test_a_new_live_feature_is_one_more_stage_and_its_own_record(processor):
    """The processor has no branch per feature: a stage added to its list runs on every
    frame and its record comes back with the frame, found by its type."""
    from dataclasses import dataclass

    from app.engine.live.stages import BaseStage

    @dataclass(frozen=True)
    class Peak:
        unit: int
        value: float

    class PeakStage(BaseStage):
        def record(self, frame):
            peaks = frame.acts.flatten(1).amax(1)
            unit = int(peaks.argmax())
            return Peak(unit, float(peaks[unit]))

    registered = processor.stages
    processor.stages = (*registered, PeakStage())
    try:
        snap = processor.process(chelsea(), ViewState(layer="_blocks.4", unit=1))
    finally:
        processor.stages = registered
    peak = snap.record(Peak)
    assert peak is not None and peak.unit == int(np.argmax(snap.unit_max))
    assert peak.value == pytest.approx(float(snap.unit_max.max()))
    assert processor.process(chelsea(), ViewState(layer="_blocks.4")).record(Peak) is None


def test_grayscale_input_feeds_the_network_the_frames_luminance(processor):
    """Colour or shape? With the frame fed in grayscale the network's answer is the answer to
    the gray photo (an independent conversion: OpenCV's), and colour units lose response."""
    import cv2

    photo = chelsea()
    view = ViewState(layer="_blocks.1", parts=(ColourView(True),))
    gray = np.repeat(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    fed = processor.process(photo, view)
    expected = processor.process(gray, ViewState(layer="_blocks.1"))
    colour = processor.process(photo, ViewState(layer="_blocks.1"))
    assert [p.index for p in fed.predictions] == [p.index for p in expected.predictions]
    assert fed.predictions[0].probability == pytest.approx(expected.predictions[0].probability,
                                                           abs=1e-3)
    np.testing.assert_allclose(fed.unit_max, expected.unit_max, atol=0.05)
    # some units of an early layer respond to colour: they drop without it
    assert float(np.max(colour.unit_max - fed.unit_max)) > 1.0
