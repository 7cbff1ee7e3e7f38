"""torch.export programs (.pt2) work in every analysis exactly as the Python model does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from app.core.jobs import run_job
from app.core.messages import ModelReady, Notice, NoticeLevel
from app.core.scan_results import load_scan_folder
from app.core.settings import ModelSettings, Settings
from app.core.view import ViewState
from app.engine.analyses.attribution import Attributor
from app.engine.analyses.featurevis import render_units
from app.engine.analyses.patches import scan
from app.engine.runtime.models import LoadedModel, load_model
from app.engine.runtime.preprocess import Preprocess
from tests.photos import chelsea, coffee, write_jpeg
from tests.waiting import collect_events, next_result

CPU = torch.device("cpu")
LAYER = "3"  # the second conv


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 5)).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from torch.export import Dim

    net = _net()
    path = tmp_path_factory.mktemp("pt2") / "net.pt2"
    program = torch.export.export(net, (torch.zeros(2, 3, 224, 224),),
                                  dynamic_shapes=({0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO},))
    torch.export.save(program, str(path))
    exported = load_model(str(path), CPU, ModelSettings())
    python = LoadedModel("net", net, Preprocess(), exported.class_names, CPU)
    return python, exported


def test_scan_of_a_program_equals_the_scan_of_its_model(models, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    write_jpeg(folder / "cat.jpg", chelsea())
    write_jpeg(folder / "cup.jpg", coffee())
    write_jpeg(folder / "cat_flipped.jpg", np.ascontiguousarray(chelsea()[:, ::-1]))
    results = []
    for loaded, out in zip(models, ("python", "exported"), strict=True):
        report = run_job(scan(loaded, folder, [LAYER], top_k=2, batch_size=2, workers=0,
                              out=tmp_path / out))
        results.append(load_scan_folder(report.layers[LAYER]))
    a, b = results
    assert a is not None and b is not None and a.units == b.units == 8
    for unit in range(8):
        assert [(e.path, e.box) for e in a.top(unit)] == [(e.path, e.box) for e in b.top(unit)]
        np.testing.assert_allclose([e.value for e in a.top(unit)],
                                   [e.value for e in b.top(unit)], rtol=1e-5)


def test_attribution_and_preferred_images_of_a_program_equal_its_models(models):
    python, exported = models
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for mode in ("gradient", "deconvnet", "guided"):  # the graph's aten.relu is caught too
        np.testing.assert_allclose(Attributor(exported, mode).attribute(x, LAYER, 2),
                                   Attributor(python, mode).attribute(x, LAYER, 2),
                                   atol=1e-6, err_msg=mode)
    renders = [run_job(render_units(m, LAYER, [1, 4], "fast", steps=6, size=64, seed=2))
               for m in models]
    np.testing.assert_allclose(renders[0].activations, renders[1].activations, rtol=1e-4)
    assert np.abs(renders[0].images.astype(int) - renders[1].images.astype(int)).max() <= 1


@pytest.mark.slow
def test_the_live_session_runs_a_program_and_refuses_torchscript(models, tmp_path):
    from app.session.live import LiveSession

    scripted = tmp_path / "net.pt"
    torch.jit.script(_net()).save(str(scripted))
    photo = write_jpeg(tmp_path / "cat.jpg", chelsea())
    session = LiveSession(Settings(), CPU)
    try:
        session.load_model(str(models[1].weights_file))
        session.open_source(str(photo))
        result = next_result(session)  # (waiting on events would take this result too)
        assert result.model == "net.pt2" and len(result.predictions) == 5
        assert result.geometry.channels > 0
        # a TorchScript file is refused with a clear error, and the program runs on (at
        # start, with no model yet, the session would fall back to the bundled one instead)
        session.poll_events()  # the program's own ModelReady and SourceReady
        session.load_model(str(scripted))
        events = collect_events(session, lambda ev: any(
            isinstance(e, Notice) and e.level == NoticeLevel.ERROR for e in ev))
        error = next(e.text for e in events if isinstance(e, Notice) and e.level == "error")
        assert "TorchScript" in error and not any(isinstance(e, ModelReady) for e in events)
        session.set_view(ViewState(unit=1))  # a still image answers a new view: still net.pt2
        assert next_result(session).model == "net.pt2"
    finally:
        session.stop()
