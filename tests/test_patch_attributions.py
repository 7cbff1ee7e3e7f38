"""The attribution of each top patch ("the deconv of the top 9"), cached with the scan."""

from __future__ import annotations

import numpy as np
import torch
from test_scan import PRE, make_images, run_scan, tiny_loaded

from app.capture.images import read_image
from app.core.jobs import run_job
from app.core.scan_results import load_scan_folder
from app.engine.analyses.attribution import Attributor, signal_to_rgb
from app.engine.analyses.patches.crops import letterbox
from app.engine.runtime.preprocess import prepare_batch
from app.engine.workflows.patch_attributions import (
    PATCH_RULE,
    attribution_file,
    cached_patch_attributions,
    patch_attributions,
    patch_attributions_job,
)

LAYER = "conv2"


def _scan(tmp_path, name="scan"):
    data = tmp_path / "data"
    if not data.exists():
        make_images(data, 9)
    report = run_scan(tiny_loaded(), data, [LAYER], top_k=3, batch_size=4, workers=0,
                      out=tmp_path / name)
    scan = load_scan_folder(report.layers[LAYER])
    assert scan is not None
    return scan


def _by_hand(loaded, path, y, x, unit, box, side):
    """The oracle: attribute the whole image at (y, x) ourselves, cut the box, letterbox."""
    t = torch.from_numpy(read_image(path)).permute(2, 0, 1)
    inp = prepare_batch([t], PRE)
    signal, pos, _ = Attributor(loaded, PATCH_RULE).input_signal(inp, LAYER, unit, (y, x))
    assert pos == (y, x)
    rgb = signal_to_rgb(signal.numpy())
    y0, x0, y1, x1 = box
    return letterbox(rgb[max(0, y0):y1, max(0, x0):x1], side)


def test_each_top_patch_is_attributed_at_its_own_image_and_position(tmp_path):
    scan = _scan(tmp_path)
    loaded = tiny_loaded()
    side = scan.meta["crop_size"]
    for unit in range(scan.units):
        images = patch_attributions(loaded, scan, unit)
        entries = scan.top(unit)
        assert images.shape == (len(entries), side, side, 3) == scan.unit_crops(unit).shape
        for entry, image in zip(entries, images, strict=True):
            expected = _by_hand(loaded, entry.path, entry.y, entry.x, unit, entry.model_box,
                                side)
            np.testing.assert_array_equal(image, expected)
        # something was attributed: not the flat grey of a zero signal everywhere
        assert (images != 128).any()


def test_attributions_are_cached_with_the_scan_and_dropped_when_it_is_redone(tmp_path):
    scan = _scan(tmp_path)
    loaded = tiny_loaded()
    assert cached_patch_attributions(scan, 0) is None
    result = run_job(patch_attributions_job(loaded, scan, [0, 2]))
    assert sorted(result) == [0, 2]
    assert attribution_file(scan, 0).is_file() and attribution_file(scan, 2).is_file()
    assert not attribution_file(scan, 1).exists()
    np.testing.assert_array_equal(cached_patch_attributions(scan, 2), result[2])
    # the cache serves them without the images: delete the files they came from
    for entry in scan.top(0):
        (tmp_path / "data").joinpath(entry.path).unlink(missing_ok=True)
    np.testing.assert_array_equal(patch_attributions(loaded, scan, 0), result[0])
    # a rescan into the same folder writes a new token: the old images are not its own
    make_images(tmp_path / "data", 9, seed=1)
    rescan = _scan(tmp_path)
    assert rescan.meta["token"] != scan.meta["token"]
    assert cached_patch_attributions(rescan, 0) is None
