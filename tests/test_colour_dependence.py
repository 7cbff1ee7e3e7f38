"""Colour or shape? (issue 22.17): a unit's top activation in grayscale over in colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_scan import run_scan

from app.core.scan_results import load_scan_folder
from app.core.settings import Settings
from app.engine.runtime.models import load_model
from app.engine.workflows.colour_dependence import colour_dependence
from tests.fake_backend import skimage_photo
from tests.photos import write_jpeg

pytestmark = pytest.mark.slow
LAYER = "_blocks.1"
COLOUR = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry")


def _scan(tmp_path, photos, gray: bool):
    data = tmp_path / ("gray" if gray else "colour")
    data.mkdir()
    for name in photos:
        rgb = skimage_photo(name)
        if gray:  # BT.601, written independently of the app's conversion
            luma = np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)
            rgb = np.repeat(luma[..., None], 3, axis=2)
        write_jpeg(data / f"{name}.png", rgb)  # PNG: lossless, so gray stays gray
    loaded = load_model("efficientnet_lite0", torch.device("cpu"), Settings().model)
    report = run_scan(loaded, data, [LAYER], top_k=3, batch_size=4, workers=0,
                      out=tmp_path / f"scan-{data.name}")
    scan = load_scan_folder(report.layers[LAYER])
    assert scan is not None
    return loaded, scan


def test_a_gray_folder_depends_on_colour_not_at_all(tmp_path):
    loaded, scan = _scan(tmp_path, ("camera", "brick", "moon"), gray=True)
    for unit in range(0, scan.units, 4):
        found = colour_dependence(loaded, scan, unit)
        assert found is not None and found.images == len(scan.top(unit))
        assert found.ratio == pytest.approx(1.0, abs=1e-3), unit


def test_colour_units_lose_their_response_without_colour(tmp_path):
    loaded, scan = _scan(tmp_path, COLOUR, gray=False)
    ratios = [r.ratio for u in range(scan.units)
              if (r := colour_dependence(loaded, scan, u)) is not None]
    assert len(ratios) == scan.units
    # an early layer holds colour detectors (far below 1) and others barely touched (near 1)
    assert min(ratios) < 0.5 and max(ratios) > 0.9, (min(ratios), max(ratios))
