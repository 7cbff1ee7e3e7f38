"""torchrun: scan, dissect, render, ablate and atlas on two gloo ranks give one process's result.

The end-to-end tests launch the real command under `python -m torch.distributed.run
--standalone --nproc-per-node 2` (a free port of its own) on real photos with the bundled
model, and compare with the same command in this process. On a CPU the numbers of a
convolution depend on the thread count (oneDNN blocks by it), so the single-process run uses
the threads each rank gets (`cores // 2`): then everything is bitwise equal.

The fault tests start two ranks themselves (a TCP rendezvous on a free port) on the
integer-weight net of `test_scan`, whose activations are exact whatever the grouping: a
rank killed mid-scan, a rank that raises, ranks that disagree.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.cli import main
from app.core.scan_results import load_scan_folder
from app.engine.runtime.distributed import Ranks

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
RANK_THREADS = max(1, len(os.sched_getaffinity(0)) // 2)
LIMIT_S = 240  # a hung job fails the test instead of the suite


# -- the split --------------------------------------------------------------------------------


def test_ranks_split_whole_batches_and_cover_everything_once():
    for n, size, world in [(23, 4, 2), (8, 2, 3), (3, 5, 2), (0, 4, 2), (40, 7, 4)]:
        ranks = [Ranks(r, world, r, world, "gloo") for r in range(world)]
        seen = sorted(i for rk in ranks for i in rk.positions(n, size))
        assert seen == list(range(n))
        for rk in ranks:
            for part in rk.chunks(n, size):  # each a batch of the one-process run
                assert part.start % size == 0 and len(part) == min(size, n - part.start)
                assert (part.start // size) % world == rk.rank
        items = [f"f{i}" for i in range(n)]
        assert sorted(x for rk in ranks for x in rk.take(items, size)) == sorted(items)


# -- end to end under torchrun ------------------------------------------------------------------


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Eight real photos: the bundled samples and three mirrored copies."""
    root = tmp_path_factory.mktemp("photos")
    samples = sorted((REPO / "assets" / "samples").glob("*.jpg"))
    for p in samples:
        shutil.copy(p, root / p.name)
    for p in samples[:3]:
        img = cv2.imread(str(p))
        assert cv2.imwrite(str(root / f"{p.stem}_mirror.jpg"), img[:, ::-1])
    return root


@pytest.fixture(scope="module")
def labeled(photos, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labeled")
    for cls, names in {"tabby": ["chelsea", "chelsea_mirror", "astronaut"],
                       "espresso": ["coffee", "coffee_mirror", "rocket"]}.items():
        (root / cls).mkdir()
        for name in names:
            shutil.copy(photos / f"{name}.jpg", root / cls / f"{name}.jpg")
    return root


def _settings(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "settings.toml"
    path.write_text(f'[cache]\ndir = "{(folder / "cache").as_posix()}"\n')
    return path


def one_process(args: list[str], capsys) -> dict:
    """The command in this process with a rank's thread count; its --json document."""
    before = torch.get_num_threads()
    torch.set_num_threads(RANK_THREADS)
    try:
        capsys.readouterr()
        assert main([*args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)
    finally:
        torch.set_num_threads(before)


def torchrun(args: list[str]) -> dict:
    """The command on two gloo ranks under torchrun; rank 0's --json document."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         "2", "-m", "app", *args, "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=LIMIT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _drop(doc: dict, *keys: str) -> dict:
    return {k: v for k, v in doc.items() if k not in keys}


@pytest.mark.slow
def test_torchrun_scan_is_one_process_scan(photos, tmp_path, capsys):
    flags = [str(photos), "--layers", "_blocks.4", "_blocks.8", "--top-k", "3",
             "--batch-size", "2", "--workers", "0"]
    one = one_process(["scan", *flags, "--settings", str(_settings(tmp_path / "a"))], capsys)
    two = torchrun(["scan", *flags, "--settings", str(_settings(tmp_path / "b"))])
    assert two["files"] == one["files"] == 8 and two["scanned"] == 8
    for la, lb in zip(one["layers"], two["layers"], strict=True):
        assert la["top"] == lb["top"], la["name"]  # paths, values, locations, boxes
        ra, rb = load_scan_folder(la["folder"]), load_scan_folder(lb["folder"])
        assert ra is not None and rb is not None
        assert np.array_equal(ra.values, rb.values)
        assert np.array_equal(np.asarray(ra.crops), np.asarray(rb.crops))
    # the merged result is the cached one: a single-process run finds it
    again = one_process(["scan", *flags, "--settings", str(tmp_path / "b" / "settings.toml")],
                        capsys)
    assert again["cached"]


@pytest.mark.slow
def test_torchrun_dissect_is_one_process_dissect(photos, tmp_path, capsys):
    flags = [str(photos), "--layers", "_blocks.4", "--batch-size", "2", "--workers", "0"]
    one = one_process(["dissect", *flags, "--settings", str(_settings(tmp_path / "a"))], capsys)
    two = torchrun(["dissect", *flags, "--settings", str(_settings(tmp_path / "b"))])
    la, lb = one["layers"]["_blocks.4"], two["layers"]["_blocks.4"]
    assert [_drop(u, "top_images") for u in la["units"]] == \
        [_drop(u, "top_images") for u in lb["units"]]
    assert la["summary"] == lb["summary"] and one["images"] == two["images"] == 8
    with np.load(Path(la["folder"]) / "tally.npz") as za, \
            np.load(Path(lb["folder"]) / "tally.npz") as zb:
        for key in ("both", "unit_cat", "label_px", "threshold", "error", "top_ids"):
            assert np.array_equal(za[key], zb[key]), key  # tallies bitwise, thresholds too
    strips = sorted(p.name for p in Path(la["folder"]).glob("unit_*.jpg"))
    assert strips and strips == sorted(p.name for p in Path(lb["folder"]).glob("unit_*.jpg"))
    for name in strips:
        assert (Path(la["folder"]) / name).read_bytes() == (Path(lb["folder"]) / name).read_bytes()


@pytest.mark.slow
def test_torchrun_render_is_one_process_render(tmp_path, capsys):
    flags = ["--layer", "_blocks.8", "--units", "0-4", "--steps", "6", "--size", "48",
             "--batch", "2"]
    one = one_process(["render", *flags, "--out", str(tmp_path / "a" / "png"),
                       "--settings", str(_settings(tmp_path / "a"))], capsys)
    two = torchrun(["render", *flags, "--out", str(tmp_path / "b" / "png"),
                    "--settings", str(_settings(tmp_path / "b"))])
    assert [u["unit"] for u in two["units"]] == [0, 1, 2, 3, 4]
    for ua, ub in zip(one["units"], two["units"], strict=True):
        assert ua["activation"] == ub["activation"]
        assert Path(ua["file"]).read_bytes() == Path(ub["file"]).read_bytes()  # same pixels
    # rank 0's cache holds every unit, those rank 1 rendered too
    cached = list((tmp_path / "b" / "cache").rglob("unit*.png"))
    assert len(cached) == 5


@pytest.mark.slow
def test_torchrun_ablate_is_one_process_ablate(labeled, tmp_path, capsys):
    flags = [str(labeled), "--layer", "_blocks.8", "--batch-size", "2", "--seeds", "2",
             "--points", "5"]
    one = one_process(["ablate", *flags, "--settings", str(_settings(tmp_path / "a"))], capsys)
    two = torchrun(["ablate", *flags, "--settings", str(_settings(tmp_path / "b"))])
    assert _drop(one, "seconds", "cache_file") == _drop(two, "seconds", "cache_file")
    assert two["images"] == 6 and Path(two["cache_file"]).is_file()


# -- faults: ranks started here, on the exact integer net -----------------------------------------

@pytest.mark.slow
def test_torchrun_atlas_is_one_process_atlas(photos, tmp_path, capsys):
    """The ranks collect alternate batches; rank 0 lays out the one-process samples (same
    rows, same order), so the cells, labels and directions are those of one process."""
    flags = [str(photos), "--layer", "_blocks.1", "--grid", "4", "--per-image", "8",
             "--min-count", "2", "--gradient-images", "3", "--batch-size", "2", "--seed", "1",
             "--icon-steps", "2", "--icon-size", "32", "--device", "cpu"]
    one = one_process(["atlas", *flags, "--out", str(tmp_path / "a" / "atlas"),
                       "--settings", str(_settings(tmp_path / "a"))], capsys)
    two = torchrun(["atlas", *flags, "--out", str(tmp_path / "b" / "atlas"),
                    "--settings", str(_settings(tmp_path / "b"))])
    assert one["images"] == two["images"] == 8 and one["samples"] == two["samples"] == 64
    assert one["cells"] == two["cells"] and one["cells"]  # places, counts, labels, icon files
    a, b = Path(one["folder"]), Path(two["folder"])
    assert np.array_equal(np.load(a / "directions.npy"), np.load(b / "directions.npy"))
    for name in ("samples.npz", "gradient.npz"):
        with np.load(a / name) as za, np.load(b / name) as zb:
            for key in za.files:  # rows in image order, their layout, their cells, J
                assert np.array_equal(za[key], zb[key]), (name, key)
    assert all((b / c["icon"]).is_file() for c in two["cells"])
    assert not (b / ".partial").exists()  # every rank's checkpoint is cleaned up
    # rank 0's folder serves the whole job the second time
    again = torchrun(["atlas", *flags, "--out", str(b),
                      "--settings", str(tmp_path / "b" / "settings.toml")])
    assert again["cached"] and again["cells"] == two["cells"]


WORKER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {tests!r})
    from app.core.jobs import run_job
    from app.engine.analyses.patches import scan
    from app.engine.runtime import distributed
    from test_scan import LAYERS, tiny_loaded

    rank, spec = int(sys.argv[1]), json.loads(sys.argv[2])
    mine = spec.get("rank%d" % rank, {{}})
    ranks = distributed.join(rank, 2, spec["init"], timeout_s=60)
    loaded = tiny_loaded()
    if mine.get("perturb"):
        import torch
        with torch.no_grad():
            loaded.module.conv1.bias.add_(1.0)
    if mine.get("raise_after"):
        from app.engine.analyses.patches import dataset_scan
        real, calls = dataset_scan.TopKTracker.merged, []
        def merged(self, *a):
            calls.append(1)
            if len(calls) > mine["raise_after"] * len(LAYERS):
                raise RuntimeError("the disk is on fire")
            return real(self, *a)
        dataset_scan.TopKTracker.merged = merged
    steps = []
    def progress(p):
        steps.append(p)
        if len(steps) == mine.get("die_after"):
            os._exit(9)  # as a kill -9: no finally, no checkpoint but the last periodic one
    try:
        report = run_job(scan(loaded, mine.get("dataset", spec["dataset"]), LAYERS, top_k=4,
                              batch_size=2, workers=0, out=spec["out"], checkpoint_every=1,
                              ranks=ranks), progress)
    except distributed.RankFailed as exc:
        print("deepvis: error: " + str(exc), file=sys.stderr)
        sys.exit(2)
    print(json.dumps({{"resumed_from": report.resumed_from, "files": report.files}}))
""").format(tests=str(TESTS))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def two_ranks(spec: dict) -> list[subprocess.CompletedProcess]:
    """Rank 0 and rank 1 of the worker above; both must end within LIMIT_S (never hang)."""
    spec = dict(spec, init=f"tcp://127.0.0.1:{_free_port()}")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(r), json.dumps(spec)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=LIMIT_S)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("a rank hung") from None
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """16 small PNGs, and the single-process scan of them (the reference)."""
    from test_scan import LAYERS, make_images, tiny_loaded

    from app.core.jobs import run_job
    from app.engine.analyses.patches import scan

    root = tmp_path_factory.mktemp("small")
    make_images(root / "data", 16)
    run_job(scan(tiny_loaded(), root / "data", LAYERS, top_k=4, batch_size=2, workers=0,
                 out=root / "reference"))
    return root / "data", root / "reference"


def _same_scan(a: Path, b: Path) -> None:
    from test_scan import LAYERS

    for layer in LAYERS:
        ra, rb = load_scan_folder(a / layer), load_scan_folder(b / layer)
        assert ra is not None and rb is not None, layer
        assert [ra.top(u) for u in range(ra.units)] == [rb.top(u) for u in range(rb.units)]
        assert np.array_equal(np.asarray(ra.crops), np.asarray(rb.crops))


def test_two_ranks_scan_is_the_single_process_scan(small, tmp_path):
    data, reference = small
    runs = two_ranks({"dataset": str(data), "out": str(tmp_path / "out")})
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
    _same_scan(reference, tmp_path / "out")
    assert not (tmp_path / "out" / ".partial").exists() or \
        not any((tmp_path / "out" / ".partial").iterdir())  # every rank's part cleaned up


def test_a_killed_rank_is_resumed_to_the_identical_result(small, tmp_path):
    data, reference = small
    out = tmp_path / "out"
    spec = {"dataset": str(data), "out": str(out)}
    first = two_ranks({**spec, "rank1": {"die_after": 2}})  # rank 1 dies after 2 of 4 batches
    assert first[1].returncode == 9
    assert first[0].returncode == 2 and "another rank stopped" in first[0].stderr
    assert load_scan_folder(out / "pool") is None  # nothing half-merged was written
    second = two_ranks(spec)  # the same command again
    assert [r.returncode for r in second] == [0, 0], second[0].stderr + second[1].stderr
    assert json.loads(second[1].stdout)["resumed_from"] == 4  # its two checkpointed batches
    _same_scan(reference, out)


def test_a_failing_rank_fails_the_job_with_its_message(small, tmp_path):
    data, _ = small
    runs = two_ranks({"dataset": str(data), "out": str(tmp_path / "out"),
                      "rank1": {"raise_after": 2}})
    for r in runs:
        assert r.returncode == 2
        assert r.stderr.strip().splitlines()[-1] == \
            "deepvis: error: rank 1 failed: the disk is on fire"
    assert load_scan_folder(tmp_path / "out" / "pool") is None


@pytest.mark.parametrize("rank1, named", [
    ({"dataset_extra": True}, "dataset listing"),
    ({"perturb": True}, "model weights"),
])
def test_ranks_that_disagree_stop_with_one_line_and_no_output(small, tmp_path, rank1, named):
    data, _ = small
    if rank1.pop("dataset_extra", False):  # rank 1 sees one more file
        other = tmp_path / "other"
        shutil.copytree(data, other)
        shutil.copy(next(other.rglob("*.png")), other / "extra.png")
        rank1["dataset"] = str(other)
    out = tmp_path / "out"
    runs = two_ranks({"dataset": str(data), "out": str(out), "rank1": rank1})
    for r in runs:
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert lines[-1].startswith(f"deepvis: error: ranks disagree on the {named}: rank 0 has")
        assert "rank 1 has" in lines[-1]
    assert not out.exists()  # no result, no checkpoint
