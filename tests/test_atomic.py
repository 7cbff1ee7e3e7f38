"""Atomic writes: all or nothing, and the permissions an ordinary write would give."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from app.core.atomic import atomic_write, atomic_write_bytes, atomic_write_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "cache.json"
    atomic_write_json(target, {"a": 1})
    assert target.read_text() == '{\n  "a": 1\n}\n'

    def half_then_crash(f):
        f.write(b'{"a": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["cache.json"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_new_files_follow_the_umask_and_old_files_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        fresh = atomic_write_bytes(tmp_path / "unit0001.png", b"png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # not mkstemp's private 0o600
    kept = tmp_path / "notes.txt"
    kept.write_bytes(b"x")
    kept.chmod(0o640)
    atomic_write_bytes(kept, b"y")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_bytes() == b"y"


def test_the_cache_never_stores_an_empty_result_over_a_good_one(tmp_path):
    """The cache's rule, as every analysis writes through it, and a scan layer's result."""
    import numpy as np

    from app.core.atomic import EmptyResult, cache_write_json, cache_write_npz
    from app.core.scan_results import load_scan_folder, save_scan_result

    good = tmp_path / "curves.json"
    cache_write_json(good, {"images": 40}, items=40, what="ablation curves of conv")
    with pytest.raises(EmptyResult, match="ablation curves of conv: empty result"):
        cache_write_json(good, {"images": 0}, items=0, what="ablation curves of conv")
    assert good.read_text() == '{\n  "images": 40\n}\n'
    with pytest.raises(EmptyResult):
        cache_write_npz(tmp_path / "new.npz", {"a": np.zeros(1)}, items=0, what="x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.json"]

    arrays = {"values": np.ones((2, 1), np.float32), "file_index": np.zeros((2, 1), np.int32),
              "y": np.zeros((2, 1), np.int32), "x": np.zeros((2, 1), np.int32),
              "box": np.zeros((2, 1, 4), np.int32), "model_box": np.zeros((2, 1, 4), np.int32)}

    def crops(path):
        np.save(path, np.zeros((2, 1, 4, 4, 3), np.uint8))

    meta = {"layer": "conv", "top_k": 1, "files_scanned": 3, "skipped": []}
    folder = save_scan_result(tmp_path / "scan" / "conv", meta, ["a.png"], arrays, crops)
    before = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
    with pytest.raises(EmptyResult, match="scan of conv"):
        save_scan_result(folder, dict(meta, files_scanned=0), [],
                         {k: v * 0 for k, v in arrays.items()}, crops)
    assert sorted((p.name, p.read_bytes()) for p in folder.iterdir()) == before
    kept = load_scan_folder(folder)
    assert kept is not None and kept.meta["files_scanned"] == 3
