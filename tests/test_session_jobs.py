"""The live session's background jobs on the real bundled model and real photos."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from app.core.messages import (
    AblationCurves,
    ClassUnitCurves,
    ColourDependence,
    ModelReady,
    PatchAttributions,
    PreferredGrid,
    PreferredImage,
    PreferredVariant,
    UnitFacts,
    UnitPatches,
)
from app.core.requests import (
    AblationRequest,
    ClassUnitsRequest,
    JobEvent,
    PreferredGridRequest,
    PreferredImageRequest,
    RenderLayerRequest,
    ScanRequest,
    UnitCardRequest,
)
from app.core.settings import Settings
from app.session.live import LiveSession
from tests.photos import chelsea, coffee, write_jpeg
from tests.waiting import collect_events

pytestmark = pytest.mark.slow


def _settings(tmp_path) -> Settings:
    s = Settings()
    return dataclasses.replace(
        s,
        cache=dataclasses.replace(s.cache, dir=str(tmp_path / "cache")),
        scan=dataclasses.replace(s.scan, workers=0, batch_size=4, top_k=3),
        render=dataclasses.replace(s.render, steps=6, size=64),
        ablate=dataclasses.replace(s.ablate, seeds=1, points=3, batch_size=4),
    )


def _unpacked(events):
    """The events, each job event's preview and result after it."""
    out = []
    for e in events:
        out.append(e)
        if isinstance(e, JobEvent):
            out.extend(m for m in (e.preview, e.result) if m is not None)
    return out


def _collect(session, until, timeout=180.0):
    return _unpacked(collect_events(session, lambda ev: until(_unpacked(ev)), timeout))


def _finished(kind):
    return lambda ev: any(isinstance(e, JobEvent) and e.finished and e.kind == kind
                          for e in ev)


def _end(ev, kind):
    return next(e for e in ev if isinstance(e, JobEvent) and e.finished and e.kind == kind)


def test_unit_patches_preferred_image_scan_and_ablation(tmp_path):
    photos = tmp_path / "photos"
    (photos / "tabby").mkdir(parents=True)
    (photos / "espresso").mkdir()
    write_jpeg(photos / "tabby" / "cat.jpg", chelsea())
    write_jpeg(photos / "tabby" / "cat_flipped.jpg", chelsea()[:, ::-1].copy())
    write_jpeg(photos / "espresso" / "cup.jpg", coffee())
    (photos / "espresso" / "broken.jpg").write_bytes(b"\xff\xd8\xff nope")
    layer = "_blocks.4"
    session = LiveSession(_settings(tmp_path), torch.device("cpu"))
    try:
        session.load_model("efficientnet_lite0")
        _collect(session, lambda ev: any(isinstance(e, ModelReady) for e in ev))

        # no scan yet: the pane says how to make one; the preferred image renders
        session.submit(PreferredImageRequest(layer, 5))
        ev = _collect(session, _finished("render"))
        patches = next(e for e in ev if isinstance(e, UnitPatches))
        assert patches.patches == () and "deepvis scan" in patches.note
        images = [e for e in ev if isinstance(e, PreferredImage)]
        assert images and images[-1].done and images[-1].unit == 5
        assert images[-1].image.dtype == np.uint8 and images[-1].image.shape[2] == 3

        # scan the folder from the session; then the unit has patches from it
        session.submit(ScanRequest(str(photos), layer))
        ev = _collect(session, _finished("scan"))
        done = _end(ev, "scan")
        assert done.ok, done.text
        assert "1 unreadable" in done.text
        assert any(isinstance(e, JobEvent) and not e.finished for e in ev)
        session.submit(PreferredImageRequest(layer, 5))
        ev = _collect(session, _finished("render"))
        patches = next(e for e in ev if isinstance(e, UnitPatches))
        assert len(patches.patches) == 3
        values = [p.value for p in patches.patches]
        assert values == sorted(values, reverse=True)
        assert all(p.source.endswith(".jpg") and "broken" not in p.source
                   for p in patches.patches)
        final = [e for e in ev if isinstance(e, PreferredImage)][-1]
        assert final.best_dataset_activation == pytest.approx(values[0])

        # the layer's preferred images as a grid: unit 5 (rendered above) and no other
        session.submit(PreferredGridRequest(layer, 1.5))
        ev = _collect(session, lambda ev: any(isinstance(e, PreferredGrid) for e in ev))
        grid = next(e for e in ev if isinstance(e, PreferredGrid))
        assert grid.layer == layer and grid.rendered == (5,) and grid.geometry.channels == 40
        y, x = grid.geometry.tile_origin(5)
        assert grid.image[y : y + 64, x : x + 64].std() > 5  # an image, not the blank fill

        # ablation curves on the labeled folder
        session.submit(AblationRequest(str(photos), layer))
        ev = _collect(session, _finished("ablate"))
        curves = next((e for e in ev if isinstance(e, AblationCurves)), None)
        assert curves is not None, _end(ev, "ablate").text
        assert curves.layer == layer and curves.selectivity.shape == (40,)
        assert curves.fractions[0] == 0.0 and curves.fractions[-1] == 1.0
        assert set(curves.curves) == {"random", "selective first", "selective last"}

        # the units the tabby class needs: ranked, and the two curves for it and the rest
        session.submit(ClassUnitsRequest(str(photos), layer, 281))
        ev = _collect(session, _finished("class_units"))
        end = _end(ev, "class_units")
        assert end.ok, end.text
        needs = next(e for e in ev if isinstance(e, ClassUnitCurves))
        assert needs.class_index == 281 and sorted(needs.ranking) == list(range(40))
        assert needs.counts[0] == 0 and needs.counts[-1] == 40 and needs.images == 2
        assert len(needs.delete_class) == len(needs.keep_other) == len(needs.counts)
        assert needs.keep_class[-1] == needs.delete_class[0]  # all kept = none deleted

        # the unit card: what the caches know, each top patch attributed, a diversity set
        session.submit(UnitCardRequest(layer, 5))
        ev = _collect(session, _finished("unit_card"))
        end = _end(ev, "unit_card")
        assert end.ok, end.text
        facts = next(e for e in ev if isinstance(e, UnitFacts))
        assert facts.selectivity is not None and "rank" in facts.selectivity
        index = float(curves.selectivity[5])
        assert facts.selectivity.startswith(f"{index:.2f} ")
        assert facts.concept is None and "deepvis dissect" in facts.concept_hint
        attributed = next(e for e in ev if isinstance(e, PatchAttributions))
        assert len(attributed.images) == 3 and attributed.rule == "guided"
        assert attributed.images[0].shape == patches.patches[0].image.shape
        assert all((image != 128).any() for image in attributed.images)
        colour = next(e for e in ev if isinstance(e, ColourDependence))
        assert (colour.layer, colour.unit, colour.images) == (layer, 5, 3)
        assert 0.0 <= colour.ratio < 5.0
        finals = [e for e in ev if isinstance(e, PreferredVariant) and e.done]
        seed = Settings().render.seed
        assert [(e.index, e.seed) for e in finals] == [(i, seed) for i in range(4)]
        assert all(not np.array_equal(a.image, b.image)  # the diversity term's work
                   for i, a in enumerate(finals) for b in finals[i + 1:])
        # asked again: everything comes from the caches, the same pictures
        session.submit(UnitCardRequest(layer, 5))
        again = _collect(session, _finished("unit_card"))
        redo = next(e for e in again if isinstance(e, PatchAttributions))
        for a, b in zip(redo.images, attributed.images, strict=True):
            np.testing.assert_array_equal(a, b)
        redone = [e for e in again if isinstance(e, PreferredVariant)]
        assert [e.done for e in redone] == [True] * 4  # no previews: the cached set
        for a, b in zip(redone, finals, strict=True):
            np.testing.assert_array_equal(a.image, b.image)

        # a whole-layer render can be cancelled
        session.submit(RenderLayerRequest(layer))
        session.cancel("render_layer")
        ev = _collect(session, _finished("render_layer"))
        end = _end(ev, "render_layer")
        assert not end.ok and "cancelled" in end.text
    finally:
        session.stop()
