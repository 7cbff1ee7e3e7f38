"""Scans of several folders for one layer: each keeps its own result, the newest is shown,
and what is shown names its folder (issue 22, item 14)."""

from __future__ import annotations

import dataclasses
import json
import shutil

from app.core.scan_results import load_scan, load_scan_folder, scan_dir, scans_of
from app.core.settings import Settings
from app.engine.runtime.cache import model_key
from app.session.jobs.units import unit_patches
from tests.photos import chelsea, coffee, write_jpeg
from tests.test_scan import run_scan, tiny_loaded

LAYER = "conv2"


def _folders(tmp_path):
    """Folder A: two cat photos; folder B: two coffee photos (real, from scikit-image)."""
    a, b = tmp_path / "cats", tmp_path / "coffee"
    a.mkdir()
    b.mkdir()
    write_jpeg(a / "cat.jpg", chelsea())
    write_jpeg(a / "cat_flipped.jpg", chelsea()[:, ::-1].copy())
    write_jpeg(b / "cup.jpg", coffee())
    write_jpeg(b / "cup_flipped.jpg", coffee()[::-1].copy())
    return a, b


def _scan(loaded, folder, cache):
    return run_scan(loaded, folder, [LAYER], top_k=2, workers=0, cache_dir=str(cache))


def test_a_second_folder_keeps_the_first_folders_top_patches(tmp_path):
    loaded, cache = tiny_loaded(), tmp_path / "cache"
    a, b = _folders(tmp_path)
    report_a = _scan(loaded, a, cache)
    report_b = _scan(loaded, b, cache)
    assert report_a.layers[LAYER] != report_b.layers[LAYER]

    kept = load_scan_folder(report_a.layers[LAYER])  # A's result is still there, A's own
    assert kept is not None and kept.dataset == a.as_posix()
    assert {e.path for u in range(kept.units) for e in kept.top(u)} <= {
        (a / "cat.jpg").as_posix(), (a / "cat_flipped.jpg").as_posix()}

    newest = load_scan(cache, model_key(loaded), LAYER)  # what every caller reads: B's
    assert newest is not None and newest.folder == report_b.layers[LAYER]
    assert newest.dataset == b.as_posix()
    assert all(e.path.startswith(b.as_posix() + "/") for e in newest.top(0))

    listed = scans_of(cache, model_key(loaded), LAYER)
    assert [(s.dataset, s.images, s.folder) for s in listed] == [
        (b.as_posix(), 2, report_b.layers[LAYER]), (a.as_posix(), 2, report_a.layers[LAYER])]
    assert listed[0].saved_at >= listed[1].saved_at

    # scanning A again makes A's the newest; B's stays
    again = _scan(loaded, a, cache)
    assert not again.cached or again.layers[LAYER] == report_a.layers[LAYER]
    assert len(scans_of(cache, model_key(loaded), LAYER)) == 2


def test_a_scan_in_the_old_single_folder_layout_is_still_read(tmp_path):
    loaded = tiny_loaded()
    a, _ = _folders(tmp_path)
    report = _scan(loaded, a, tmp_path / "new")
    old = scan_dir(tmp_path / "old", model_key(loaded)) / LAYER
    shutil.copytree(report.layers[LAYER], old)
    doc = json.loads((old / "result.json").read_text())
    del doc["saved_at"]  # written before results carried their time
    (old / "result.json").write_text(json.dumps(doc))
    res = load_scan(tmp_path / "old", model_key(loaded), LAYER)
    assert res is not None and res.folder == old and res.dataset == a.as_posix()
    assert [s.folder for s in scans_of(tmp_path / "old", model_key(loaded), LAYER)] == [old]


def test_the_sessions_unit_patches_name_the_scanned_folder(tmp_path):
    loaded = tiny_loaded()
    s = Settings()
    settings = dataclasses.replace(s, cache=dataclasses.replace(s.cache, dir=str(tmp_path / "c")))
    a, b = _folders(tmp_path)
    none, _ = unit_patches(settings, loaded, LAYER, 1)
    assert none.patches == () and none.dataset == ""
    _scan(loaded, a, tmp_path / "c")
    from_a, _ = unit_patches(settings, loaded, LAYER, 1)
    assert from_a.dataset == a.as_posix() and from_a.patches
    _scan(loaded, b, tmp_path / "c")
    from_b, _ = unit_patches(settings, loaded, LAYER, 1)
    assert from_b.dataset == b.as_posix()
    assert all(p.source.startswith(b.as_posix() + "/") for p in from_b.patches)
