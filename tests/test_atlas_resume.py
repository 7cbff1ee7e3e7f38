"""The atlas's collection resumes: a cancelled run goes on after its checkpoint and makes
the atlas of an uninterrupted one; another run's checkpoint is never read; resume=False
starts over. (Under torchrun: tests/test_distributed.py; killed: test_fault_injection.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from photos import write_photo_folder

pytestmark = pytest.mark.slow  # the bundled model


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_photo_folder(tmp_path_factory.mktemp("photos"))


def _build(photos: Path, out: Path, cancel_after: int | None = None, **kw: object
           ) -> tuple[object, list]:
    """The atlas job on the bundled model, driven to its result (or cancelled after
    `cancel_after` progress steps); its progress steps."""
    import threading

    import torch

    from app.core.jobs import run_job
    from app.engine.analyses.atlas import build_atlas
    from app.engine.runtime.models import load_bundled

    steps: list = []
    cancel = threading.Event()

    def progress(p: object) -> None:
        steps.append(p)
        if cancel_after is not None and len(steps) >= cancel_after:
            cancel.set()

    settings: dict = {"grid": 4, "per_image": 12, "min_count": 2, "gradient_images": 2,
                      "seed": 2, "batch_size": 1, "checkpoint_every": 1, **kw}
    job = build_atlas(load_bundled(torch.device("cpu")), photos, "_blocks.1", out=out,
                      **settings)
    return run_job(job, progress, cancel), steps


def _same_atlas(a: Path, b: Path) -> None:
    assert json.loads((a / "cells.json").read_text()) == json.loads((b / "cells.json").read_text())
    assert np.array_equal(np.load(a / "directions.npy"), np.load(b / "directions.npy"))
    for name in ("samples.npz", "gradient.npz"):
        with np.load(a / name) as za, np.load(b / name) as zb:
            assert sorted(za.files) == sorted(zb.files)
            for k in za.files:
                assert np.array_equal(za[k], zb[k]), (name, k)


def test_a_cancelled_collection_resumes_to_the_atlas_of_an_uninterrupted_run(tmp_path, photos):
    from app.core.jobs import Cancelled

    whole, steps = _build(photos, tmp_path / "whole")
    assert whole.images == 4 and not any(s.resumed_from for s in steps)
    assert not (tmp_path / "whole" / ".partial").exists()
    out = tmp_path / "resumed"
    with pytest.raises(Cancelled):  # the first yield, then two of the four images
        _build(photos, out, cancel_after=3)
    (ckpt,) = (out / ".partial").iterdir()
    assert json.loads((ckpt / "state.json").read_text())["done"] == 2
    assert not (out / "meta.json").exists()
    # a checkpoint of another run (other inputs: another key) is not this run's
    with pytest.raises(Cancelled):
        _build(photos, out, cancel_after=2, per_image=11)
    assert len(list((out / ".partial").iterdir())) == 2
    resumed, steps = _build(photos, out)
    collect = [s for s in steps if s.stage == "collect"]
    assert collect[0].resumed_from == 2 and collect[0].done == 2 and "resumed at 2" in \
        collect[0].line()
    assert len(collect) == 1 + 2  # only the two images not done were read
    _same_atlas(tmp_path / "whole", out)
    assert np.array_equal(resumed.samples, whole.samples)
    assert resumed.cells == whole.cells
    # this run's checkpoint is gone, the other run's is left alone
    (other,) = (out / ".partial").iterdir()
    assert other != ckpt and (other / "state.json").is_file()


def test_restart_ignores_a_checkpoint(tmp_path, photos):
    from app.core.jobs import Cancelled

    out = tmp_path / "out"
    with pytest.raises(Cancelled):
        _build(photos, out, cancel_after=3)
    (ckpt,) = (out / ".partial").iterdir()
    # a checkpoint whose rows were tampered with would show in the result if it were read
    state = json.loads((ckpt / "state.json").read_text())
    for name in state["chunks"]:
        with np.load(ckpt / name) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["rows"] = arrays["rows"] + 100.0
        np.savez(ckpt / name, **arrays)
    fresh, steps = _build(photos, out, resume=False)
    assert not any(s.resumed_from for s in steps)
    assert float(np.abs(fresh.samples).max()) < 100.0
    assert not (out / ".partial").exists()


def test_a_cancelled_atlas_that_keeps_no_partial_leaves_nothing_behind(tmp_path, photos):
    """The session's atlas (its frames are a snapshot no later run can resume on) passes
    keep_partial=False: cancelled in the collection, no checkpoint and no folder stay."""
    from app.core.jobs import Cancelled

    out = tmp_path / "session-atlas"
    with pytest.raises(Cancelled):
        _build(photos, out, cancel_after=3, keep_partial=False)
    assert not out.exists()
    with pytest.raises(Cancelled):  # as every other atlas: its checkpoint kept to resume
        _build(photos, out, cancel_after=3)
    assert len(list((out / ".partial").iterdir())) == 1

