"""The first look: a click on a unit shows a short render's image before the full render
starts, and the full render (its image and its cache entry) is what it is without it.
Real bundled model, the preferred image's session job as the window runs it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from app.core.jobs import Progress
from app.core.messages import PreferredImage
from app.core.requests import PreferredImageRequest
from app.core.settings import Settings
from app.engine.analyses.featurevis import render_units
from app.engine.analyses.featurevis.presets import (
    FIRST_LOOK_STEPS,
    first_look,
    get_preset,
    recipe_digest,
)
from app.engine.analyses.featurevis.render import cached_unit
from app.engine.runtime.cache import cache_root
from app.engine.runtime.models import LoadedModel, load_model
from app.session.jobs import JobContext, make_job
from app.session.jobs import units as unit_jobs

LAYER, UNIT = "_blocks.4", 7


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    s = Settings()
    return load_model(s.model.default, torch.device("cpu"), s.model)


def _settings(tmp_path, preset: str) -> Settings:
    s = Settings()
    return dataclasses.replace(
        s, cache=dataclasses.replace(s.cache, dir=str(tmp_path / "cache")),
        render=dataclasses.replace(s.render, preset=preset, steps=16, size=64, seed=3))


def test_only_presets_whose_own_first_preview_comes_late_get_a_first_look():
    for name in ("fast", "lucid", "yosinski2015", "fooling"):
        assert first_look(get_preset(name)) is None, name
    maco = get_preset("maco")
    look = first_look(maco)
    assert look is not None
    assert (look.steps, look.crops, look.size) == (FIRST_LOOK_STEPS, 1, maco.size)
    assert look.steps < maco.steps and maco.crops > 1


def test_first_look_comes_before_the_full_render_and_does_not_change_it(
        tmp_path, loaded, monkeypatch):
    settings = _settings(tmp_path, "maco")
    full = get_preset("maco").with_overrides(16, 64)
    # in the order they happen: ("render i", step) per step of the i-th render the job
    # starts, ("preview", step) per preferred image the job sends
    log: list[tuple[str, int]] = []
    calls = [0]
    real = unit_jobs.render_units

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        name = f"render {calls[0]}"
        calls[0] += 1
        job = real(*args, **kwargs)
        result = yield from ((log.append((name, p.done)), p)[1] for p in job)
        return result

    monkeypatch.setattr(unit_jobs, "render_units", recorded)
    job = make_job(JobContext(settings, loaded, {}), PreferredImageRequest(LAYER, UNIT))
    assert job is not None
    images = [s.preview for s in _steps_logged(job, log) if isinstance(s, Progress)
              and isinstance(s.preview, PreferredImage)]
    order = [name for name, _ in log]
    first_preview = order.index("preview")
    assert "render 0" in order[:first_preview]  # the first look ran first...
    assert "render 1" not in order[:first_preview]  # ...and the full render had not begun
    assert order.index("render 1") > first_preview
    # the first look's picture, then the full render's previews, then its final image
    assert images[0].step == 0 and not images[0].done and images[0].total == full.steps
    assert images[-1].done and images[-1].step == full.steps

    # the same image as the full render alone, same seed and recipe, without any first look
    alone = list(render_units(loaded, LAYER, [UNIT], full, seed=3))[-1]
    assert alone.images is not None
    assert np.array_equal(images[-1].image, alone.images[0])
    assert not np.array_equal(images[0].image, images[-1].image)
    # cached under the full render's own key; the first look is cached nowhere
    root = cache_root(settings.cache.dir)
    hit = cached_unit(loaded, root, LAYER, UNIT, full, seed=3)
    assert hit is not None and np.array_equal(hit[0], alone.images[0])
    look = first_look(full)
    assert look is not None and recipe_digest(look) != recipe_digest(full)
    assert cached_unit(loaded, root, LAYER, UNIT, look, seed=3) is None
    # a second click is served from the cache: no first look, no render
    log.clear()
    calls[0] = 0
    job = make_job(JobContext(settings, loaded, {}), PreferredImageRequest(LAYER, UNIT))
    assert job is not None
    again = [s.preview for s in _steps_logged(job, log) if isinstance(s, Progress)
             and isinstance(s.preview, PreferredImage)]
    assert [i.done for i in again] == [True] and np.array_equal(again[0].image, hit[0])
    assert calls[0] == 1 and [e for e in log if e[0] != "preview"] == [("render 0", 16)]


def _steps_logged(job, log):  # type: ignore[no-untyped-def]
    """The job's steps, each preferred image noted in `log` as it passes."""
    for s in job:
        if isinstance(s, Progress) and isinstance(s.preview, PreferredImage):
            log.append(("preview", s.preview.step))
        yield s
