"""Concept layers in the live view, on the real bundled model and real photos: listed after
their source, tiled as codes of the recorded source map, deleted from the source's output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.core.jobs import run_job
from app.core.results import DeletionRecord, LiveTopRecord
from app.core.settings import Settings
from app.core.view import DeletionView, ViewState
from app.engine.analyses.concepts import ConceptLayer, learn_concepts, load_dictionary
from app.engine.live.worker import FrameProcessor
from app.engine.runtime.models import load_model
from tests.photos import chelsea, coffee, write_jpeg, write_photo_folder

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")
SOURCE = "_blocks.8"
K = 8
CONCEPTS = f"{SOURCE}@nmf{K}"


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """A small dictionary of the bundled model's _blocks.8, learned into a fresh cache."""
    root = tmp_path_factory.mktemp("concepts")
    loaded = load_model("efficientnet_lite0", CPU, Settings().model)
    cache = str(root / "cache")
    photos = write_photo_folder(root / "photos", ".jpg")
    d = run_job(learn_concepts(loaded, photos, SOURCE, K, "nmf", samples=500, iterations=40,
                               cache_dir=cache))
    proc = FrameProcessor(loaded, cache_dir=cache)
    yield proc, d
    proc.close()


def test_a_cached_dictionary_is_listed_right_after_its_source(learned):
    proc, _d = learned
    names = [info.name for info in proc.layers]
    assert names[names.index(SOURCE) + 1] == CONCEPTS
    info = proc.by_name[CONCEPTS]
    assert info.shape == (K, *proc.by_name[SOURCE].shape[1:]) and info.kind == "concepts"
    # a processor without the cache has only the model's own layers
    bare = FrameProcessor(proc.loaded)
    try:
        assert CONCEPTS not in [i.name for i in bare.layers]
    finally:
        bare.close()


def test_a_concept_layer_tiles_the_codes_of_the_recorded_source_map(learned):
    proc, d = learned
    snap = proc.process(chelsea(), ViewState(layer=CONCEPTS, unit=3))
    assert snap.layer == CONCEPTS and snap.geometry.channels == K
    source = proc.recorder.activations[SOURCE][-1]
    # the dictionary as stored, on its own ConceptLayer: the codes of the source activation
    codes = ConceptLayer(load_dictionary(d.folder), CPU).codes(source).numpy()
    assert codes.shape[0] == K and codes.max() > 0
    np.testing.assert_allclose(snap.unit_map, codes[3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(snap.unit_max, codes.reshape(K, -1).max(1), rtol=1e-5, atol=1e-6)
    h, w = codes.shape[1:]
    strongest = int(codes.reshape(K, -1).max(1).argmax())
    y, x = snap.geometry.tile_origin(strongest)
    tile = snap.mosaic[y : y + h, x : x + w]
    assert tile.max() == 255
    assert np.unravel_index(tile.argmax(), tile.shape) == np.unravel_index(
        codes[strongest].argmax(), (h, w))
    # another photo, then the first again: each frame's own codes (none kept from before)
    other = proc.process(coffee(), ViewState(layer=CONCEPTS, unit=3))
    other_codes = ConceptLayer(load_dictionary(d.folder), CPU).codes(
        proc.recorder.activations[SOURCE][-1]).numpy()
    assert np.abs(other_codes[3] - codes[3]).max() > 1e-3
    np.testing.assert_allclose(other.unit_map, other_codes[3], rtol=1e-5, atol=1e-6)
    again = proc.process(chelsea(), ViewState(layer=CONCEPTS, unit=3))
    np.testing.assert_allclose(again.unit_map, codes[3], rtol=1e-5, atol=1e-6)
    # a fresh frame: the live top-k of a concept keeps its code's maximum, like a unit's
    fresh = proc.process(chelsea(), ViewState(layer=CONCEPTS, unit=strongest), frame_id=10**6)
    top = fresh.record(LiveTopRecord)
    assert top is not None and len(top.patches) == 1
    assert top.patches[0].value == pytest.approx(float(codes[strongest].max()), rel=1e-5)


def test_deleting_a_concept_live_removes_exactly_its_component(learned):
    proc, d = learned
    image = coffee()
    base = proc.process(image, ViewState(layer=SOURCE))
    intact = proc.recorder.activations[SOURCE][-1].clone()
    codes = ConceptLayer(load_dictionary(d.folder), CPU).codes(intact)
    k = int(codes.flatten(1).sum(1).argmax())  # the concept that carries most here
    view = ViewState(layer=SOURCE, parts=(DeletionView(((CONCEPTS, (k,)),)),))
    snap = proc.process(image, view)
    edited = proc.recorder.activations[SOURCE][-1]
    component = codes[k][None] * torch.from_numpy(d.directions[k])[:, None, None]
    assert component.abs().max() > 0
    torch.testing.assert_close(intact - edited, component, rtol=1e-4, atol=1e-5)
    # the network downstream gets the edited map: the predictions change; the intact
    # network's are shown beside them
    rec = snap.record(DeletionRecord)
    assert rec is not None
    assert [p.index for p in rec.intact] == [p.index for p in base.predictions]
    before = {p.index: p.probability for p in base.predictions}
    after = {p.index: p.probability for p in snap.predictions}
    assert max(abs(after.get(i, 0.0) - q) for i, q in before.items()) > 1e-3
    # restoring it gives the intact activation back exactly
    proc.process(image, ViewState(layer=SOURCE))
    torch.testing.assert_close(proc.recorder.activations[SOURCE][-1], intact)


def test_the_learn_job_through_the_session_adds_a_layer_the_worker_shows(tmp_path):
    import dataclasses

    from app.core.messages import ConceptNames, LayersChanged, ModelReady
    from app.core.requests import (
        ConceptNamesRequest,
        ConceptsRequest,
        RenameConceptRequest,
    )
    from app.session.live import LiveSession
    from tests.waiting import collect_events, job_finished, next_result

    photos = write_photo_folder(tmp_path / "photos", ".jpg")
    s = Settings()
    settings = dataclasses.replace(s, cache=dataclasses.replace(s.cache, dir=str(tmp_path / "c")))
    session = LiveSession(settings, CPU)

    try:
        session.load_model("efficientnet_lite0")
        ready = collect_events(session, lambda ev: any(isinstance(e, ModelReady) for e in ev),
                               120.0)
        model = next(e for e in ready if isinstance(e, ModelReady))
        assert not any(i.kind == "concepts" for i in model.layers)  # an empty cache
        session.submit(ConceptsRequest(str(photos), SOURCE, 6, "nmf"))
        done = job_finished(session, "concepts_learn", 300.0)[1]
        assert done.ok, done.text
        changed = done.result
        assert isinstance(changed, LayersChanged) and changed.added == f"{SOURCE}@nmf6"
        names = [i.name for i in changed.layers]
        assert names[names.index(SOURCE) + 1] == changed.added
        assert [i.name for i in changed.layers if i.kind != "concepts"] == \
            [i.name for i in model.layers]
        # the worker shows it: six concept maps of the photo
        session.open_source(str(write_jpeg(tmp_path / "cat.jpg", chelsea())))
        session.set_view(ViewState(layer=changed.added, unit=2))
        result = next_result(session, lambda r: r.layer == changed.added, timeout=60.0)
        assert result is not None and result.geometry.channels == 6
        # names: the defaults, then one renamed and stored with the dictionary
        session.submit(ConceptNamesRequest(changed.added))
        got = job_finished(session, "concept_names", 30.0)[1]
        assert got.result == ConceptNames(changed.added, tuple(f"concept {i}" for i in range(6)))
        session.submit(RenameConceptRequest(changed.added, 2, "  striped   fur "))
        got = job_finished(session, "concept_rename", 30.0)[1]
        assert isinstance(got.result, ConceptNames) and got.result.names[2] == "striped fur"
        session.submit(ConceptNamesRequest(changed.added))
        got = job_finished(session, "concept_names", 30.0)[1]
        assert isinstance(got.result, ConceptNames) and got.result.names[2] == "striped fur"
    finally:
        session.stop()


def test_the_why_tab_explains_a_concept_layer_in_concepts(learned):
    """act × grad in concept space: concept k's share is Σ_xy codes_k · (H_k · ∂score/∂a),
    with the gradient at the source layer computed here by plain autograd."""
    from app.core.results import BuildingBlocks
    from app.core.view import BlocksView
    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch

    proc, d = learned
    image = chelsea()
    snap = proc.process(image, ViewState(layer=CONCEPTS, parts=(BlocksView(on=True),)))
    rec = snap.record(BuildingBlocks)
    assert rec is not None and rec.layer == CONCEPTS and rec.channels.shape == (K,)
    assert rec.group_channels.shape[1] == K  # the groups are made of concepts too
    lm = proc.loaded
    x = prepare_batch([frame_to_tensor(image, CPU)], lm.preprocess)
    caught: list[torch.Tensor] = []

    def leaf(_m, _i, out):
        z = out.detach().requires_grad_(True)
        caught.append(z)
        return z

    module = dict(lm.module.named_modules())[SOURCE]
    handle = module.register_forward_hook(leaf)
    try:
        with torch.enable_grad():
            logits = lm.module(x)
            (grad,) = torch.autograd.grad(logits[0, rec.target], caught[-1])
    finally:
        handle.remove()
    a = caught[-1].detach()[0]
    codes = ConceptLayer(load_dictionary(d.folder), CPU).codes(a)
    along = torch.einsum("chw,kc->khw", grad[0], torch.from_numpy(d.directions))
    expected = (codes * along).sum((1, 2)).numpy()
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(rec.channels, expected, rtol=1e-3, atol=1e-4)


def test_a_concept_is_attributed_through_its_direction(learned):
    """The attributed value is h_k · a(pos) at the source layer: by linearity its input
    gradient is Σ_c h_kc ∇a_c(pos), here from the attributor, one source channel at a time."""
    from app.core.messages import AttributionMode
    from app.core.results import AttributionRecord
    from app.core.view import AttributionView
    from app.engine.analyses.attribution.attributor import Attributor, saliency_to_uint8

    proc, d = learned
    k, pos = 2, (6, 8)
    snap = proc.process(chelsea(), ViewState(
        layer=CONCEPTS, unit=k, parts=(AttributionView(AttributionMode.GUIDED, pos),)))
    rec = snap.record(AttributionRecord)
    assert rec is not None and rec.mode == AttributionMode.GRADIENT  # what it really is
    lm = proc.loaded
    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch

    x = prepare_batch([frame_to_tensor(chelsea(), CPU)], lm.preprocess)
    attributor = Attributor(lm.module)
    attributor.mode = AttributionMode.GRADIENT
    total = torch.zeros(3, *x.shape[-2:])
    with torch.enable_grad():
        for c, weight in enumerate(d.directions[k]):
            if weight != 0:
                total += float(weight) * attributor.input_signal(x, SOURCE, c, pos)[0]
    expected = saliency_to_uint8(total.abs().amax(0).numpy())
    assert expected.max() == 255
    assert np.abs(rec.saliency.astype(int) - expected.astype(int)).max() <= 1
