"""A tested concept as a unit of the live view, on the real bundled model and real photos:
the TCAV job through the session adds the CAV's one-unit layer after its source and the
worker tiles it (CAV · activation per position); deleting it projects the CAV out of the
source layer's output (what the rest of the network receives has no component along it);
the audit job writes its report page and adds each group's direction as a unit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from app.core.messages import LayersChanged, ModelReady, ReportWritten
from app.core.requests import AuditRequest, JobEvent, TcavRequest
from app.core.settings import Settings
from app.core.view import DeletionView, ViewState
from app.engine.live.worker import FrameProcessor
from app.engine.runtime.cache import model_key
from app.engine.runtime.directions import DirectionSet, write_direction_set
from app.engine.runtime.models import load_model
from tests.photos import chelsea, write_jpeg

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")
SOURCE = "_blocks.8"


def crops(img: np.ndarray, n: int, seed: int, side: int = 160) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        y, x = rng.integers(0, h - side), rng.integers(0, w - side)
        out.append(np.ascontiguousarray(img[y:y + side, x:x + side]))
    return out


def write_all(folder: Path, images: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        write_jpeg(folder / f"{i:02d}.jpg", np.dstack([img] * 3) if img.ndim == 2 else img)
    return folder


def others() -> list[np.ndarray]:
    from skimage import data as skdata

    return [getattr(skdata, n)() for n in ("coffee", "astronaut", "rocket", "camera", "brick",
                                           "hubble_deep_field", "immunohistochemistry",
                                           "retina")]


def test_deleting_a_cav_unit_projects_it_out_of_the_source_layer(tmp_path):
    loaded = load_model("efficientnet_lite0", CPU, Settings().model)
    bare = FrameProcessor(loaded)
    channels = bare.by_name[SOURCE].shape[0]
    bare.close()
    direction = np.random.default_rng(0).normal(size=(1, channels)).astype(np.float32)
    folder = tmp_path / "directions" / model_key(loaded) / SOURCE / "cav-planted-0"
    name = f"{SOURCE}@cav-planted"
    write_direction_set(folder, direction, ["planted"], {
        "kind": "linear", "source_layer": SOURCE, "direction_layer": name})
    proc = FrameProcessor(loaded, cache_dir=str(tmp_path))
    try:
        names = [i.name for i in proc.layers]
        assert names[names.index(SOURCE) + 1] == name and proc.by_name[name].shape[0] == 1
        image = chelsea()
        shown = proc.process(image, ViewState(layer=name))
        intact = proc.recorder.activations[SOURCE][-1].clone()
        d = torch.from_numpy(direction[0])
        along = torch.einsum("chw,c->hw", intact.float(), d)
        assert along.abs().max() > 1.0
        assert shown.geometry.channels == 1
        proc.process(image, ViewState(layer=name, parts=(DeletionView(((name, (0,)),)),)))
        edited = proc.recorder.activations[SOURCE][-1].float()
        # what the network downstream receives has nothing left along the CAV
        assert torch.einsum("chw,c->hw", edited, d).abs().max() < 1e-3 * along.abs().max()
        # and nothing else changed: the difference is the component along it
        component = along[None] * (d / d.square().sum())[:, None, None]
        torch.testing.assert_close(intact.float() - edited, component, rtol=1e-4, atol=1e-4)
    finally:
        proc.close()


def test_tcav_and_the_audit_through_the_session_add_units_the_worker_shows(tmp_path):
    from app.session.live import LiveSession
    from tests.waiting import collect_events, job_finished, next_result

    cat = write_all(tmp_path / "cat fur", crops(chelsea(), 6, 0))
    random = write_all(tmp_path / "random", [c for img in others() for c in crops(img, 1, 1)])
    examples = write_all(tmp_path / "tabby", crops(chelsea(), 4, 2, side=220))
    s = Settings()
    settings = dataclasses.replace(s, cache=dataclasses.replace(s.cache, dir=str(tmp_path / "c")))
    session = LiveSession(settings, CPU)

    try:
        session.load_model("efficientnet_lite0")
        collect_events(session, lambda ev: any(isinstance(e, ModelReady) for e in ev), 120.0)
        session.submit(TcavRequest(str(cat), str(random), str(examples), "tabby", (SOURCE,),
                                   runs=2))
        _, done = job_finished(session, "tcav", 300.0)
        assert done.ok, done.text
        assert "tabby" in done.text and SOURCE in done.text and "p " in done.text
        changed = done.result
        assert isinstance(changed, LayersChanged) and changed.added == f"{SOURCE}@cav-cat-fur"
        names = [i.name for i in changed.layers]
        assert names[names.index(SOURCE) + 1] == changed.added
        session.open_source(str(write_jpeg(tmp_path / "cat.jpg", chelsea())))
        session.set_view(ViewState(layer=changed.added))
        result = next_result(session, lambda r: r.layer == changed.added, timeout=60.0)
        assert result.geometry.channels == 1

        # a direction set sent as a preview (an atlas's cells, on the way to its answer)
        # joins the layers without being shown
        channels = next(i.shape[0] for i in changed.layers if i.name == SOURCE)
        cells = DirectionSet(name=f"{SOURCE}@atlas2", source=SOURCE, kind="linear",
                             directions=np.eye(2, channels, dtype=np.float32),
                             names=("a", "b"))
        session.poll_events()
        session._post_job(JobEvent(AuditRequest("x"), 0, 1, "", preview=cells))
        (news,) = [e for e in session.poll_events() if isinstance(e, JobEvent)]
        assert isinstance(news.preview, LayersChanged) and news.preview.added == ""
        assert f"{SOURCE}@atlas2" in {i.name for i in news.preview.layers}

        # the audit: two groups of two class folders each
        root = tmp_path / "audit"
        for g, (seed, img) in enumerate(((3, chelsea()), (4, others()[0]))):
            write_all(root / f"group{g}" / "tabby", crops(img, 3, seed))
            write_all(root / f"group{g}" / "espresso", crops(others()[0], 3, seed + 10))
        session.submit(AuditRequest(str(root), (), (SOURCE,)))
        events, done = job_finished(session, "audit", 600.0)
        assert done.ok, done.text
        page = next(e.preview for e in events
                    if isinstance(e, JobEvent) and isinstance(e.preview, ReportWritten))
        assert Path(page.path).is_file() and "<html" in Path(page.path).read_text().lower()
        assert isinstance(done.result, LayersChanged)
        added = {i.name for i in done.result.layers}
        assert {f"{SOURCE}@cav-group0", f"{SOURCE}@cav-group1"} <= added
    finally:
        session.stop()


def test_a_direction_result_that_does_not_fit_the_model_changes_no_layer():
    """A set whose source is not a layer of the model (another model's) is not added."""
    from app.session.live import LiveSession

    stray = DirectionSet(name="nowhere@cav-x", source="nowhere", kind="linear",
                         directions=np.ones((1, 4), np.float32), names=("x",))
    session = LiveSession(Settings(), CPU)
    try:
        session._post_job(JobEvent(TcavRequest("a", "b", "c", "0", ("nowhere",)), 1, 1, "done",
                                   result=(stray,)))
        (event,) = session.poll_events()
        assert isinstance(event, JobEvent) and event.result is None
    finally:
        session.stop()
