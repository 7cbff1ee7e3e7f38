"""Fault injection: `deepvis dissect` and `deepvis scan` killed with SIGKILL at each stage
(during the first pass, the second, while writing), and `deepvis atlas` killed while
collecting, leave no process behind, and a rerun resumes. The decoding workers used to
outlive a killed job for good (reparented to init, ~850 MB each): nothing in a killed
process cleans up, so the workers must notice alone.

Each run is its own session (process group); a process counts as left when it is in that
group and not a zombie. The start methods the window uses (forkserver, spawn) are driven
through the engine API, as the window drives them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from photos import ASSETS, write_jpeg
from waiting import wait_until

import app

pytestmark = pytest.mark.slow

APP_ROOT = Path(app.__file__).resolve().parents[1]
LAYER = "_blocks.1"  # an early layer: the passes are short, the kill points still distinct


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~50 real photos (the samples and scikit-image's, each also flipped, cropped and
    turned): enough batches for every stage to last a while."""
    from skimage import data as skdata

    folder = tmp_path_factory.mktemp("photos")
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
              for p in sorted((ASSETS / "samples").glob("*.jpg"))]
    for name in ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins",
                 "immunohistochemistry"):
        img = getattr(skdata, name)()
        images.append(np.dstack([img] * 3) if img.ndim == 2 else img[..., :3])
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        for j, variant in enumerate((img, img[:, ::-1], img[h // 4:, w // 4:],
                                     np.rot90(img))):
            write_jpeg(folder / f"p{i:02d}_{j}.jpg", np.ascontiguousarray(variant))
    return folder


def _settings(tmp: Path, dissect: str = "") -> Path:
    path = tmp / "settings.toml"
    path.write_text(f'[cache]\ndir = "{(tmp / "cache").as_posix()}"\n'
                    "[model]\ndevice = \"cpu\"\n"
                    "[scan]\nworkers = 2\nbatch_size = 4\ncheckpoint_every = 1\ntop_k = 9\n"
                    f"[dissect]\nbatch_size = 8\ntop_k = 2\n{dissect}")
    return path


def _members(pgid: int) -> list[tuple[int, int, str]]:
    """(pid, parent pid, command line) of the live processes of process group `pgid`."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append((int(d.name), int(fields[1]), cmd.strip()))
    return found


def _start(argv: list[str], tmp: Path, name: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(APP_ROOT), QT_QPA_PLATFORM="offscreen")
    with open(tmp / f"{name}.out", "wb") as out, open(tmp / f"{name}.err", "wb") as err:
        return subprocess.Popen([sys.executable, *argv], cwd=APP_ROOT, env=env, stdout=out,
                                stderr=err, start_new_session=True)


def _kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str) -> None:
    """SIGKILL `proc` as soon as `ready()`; then nothing of its group may stay alive."""
    hit = wait_until(lambda: ready() or proc.poll() is not None, timeout=240)
    assert hit and proc.poll() is None, f"the job ended before {what}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()  # reaped, as a shell reaps it: the workers' parent is gone for good
    if not wait_until(lambda: not _members(proc.pid), timeout=20):
        left = _members(proc.pid)
        for pid, _, _ in left:  # clean up for the next test before failing
            os.kill(pid, signal.SIGKILL)
        raise AssertionError(f"killed {what}: left running {left}")


def _workers(proc: subprocess.Popen[bytes]) -> bool:
    return any(ppid == proc.pid for _, ppid, _ in _members(proc.pid))


def _checkpoint(out: Path) -> tuple[int, int]:
    """(pass, batches done) of the newest checkpoint of a dissection (1, n: the first)."""
    for state in out.glob(".partial/*/state.json"):
        try:
            doc = json.loads(state.read_text())
            return int(doc["stage"]), int(doc["done"])
        except (OSError, ValueError, KeyError):
            pass
    return 0, 0


def _drawn(out: Path) -> bool:
    """Pass 2 has staged a top image's mask tile (`dissection.tiles`)."""
    for filled in out.glob(".partial/*/tiles/*/filled.npy"):
        try:
            if np.load(filled, allow_pickle=False).any():
                return True
        except (OSError, ValueError):
            pass  # being created
    return False


@pytest.mark.parametrize("stage", ["pass one", "pass two", "pass two, network twice",
                                   "writing"])
def test_killed_dissection_leaves_no_process_and_resumes(photos: Path, tmp_path: Path,
                                                         stage: str) -> None:
    out = tmp_path / "dissect"
    # over the spool budget (0): pass 2 decodes the images again, in worker processes
    twice = "spool_gb = 0\n" if stage.endswith("twice") else ""
    argv = ["-m", "app", "dissect", str(photos), "--layers", LAYER, "--settings",
            str(_settings(tmp_path, twice)), "--out", str(out)]
    # a batch in: the workers have decoded the next ones, whose labels fill the pipe to
    # the dead reader (a worker that then waits to flush it at exit is the leak); a pass 2
    # that reads the spool has no workers
    ready = {
        "pass one": lambda: _workers(proc) and _checkpoint(out) >= (1, 1),
        "pass two": lambda: _checkpoint(out)[0] == 2
        and _drawn(out),  # some top image drawn: a batch in
        "pass two, network twice": lambda: _workers(proc) and _checkpoint(out)[0] == 2
        and _drawn(out),
        "writing": lambda: (out / "meta.json").exists(),
    }[stage]
    proc = _start(argv, tmp_path, "killed")
    _kill_when(proc, ready, f"dissect during {stage}")

    again = _start(argv, tmp_path, "rerun")
    assert again.wait(timeout=600) == 0, (tmp_path / "rerun.err").read_text()
    err = (tmp_path / "rerun.err").read_text()
    if stage != "writing":  # a checkpoint of every batch: the rerun takes up after it
        assert "dissect: resumed an interrupted run in pass " + \
            ("1 (thresholds)" if stage == "pass one" else "2 (tally)") in err, err
    assert "deepvis: error" not in err and "Traceback" not in err, err
    assert not _members(again.pid)
    doc = json.loads((out / "result.json").read_text())
    assert doc["images"] == len(list(photos.iterdir())) and LAYER in doc["layers"]


@pytest.mark.parametrize("stage", ["scan", "crops", "writing"])
def test_killed_scan_leaves_no_process_and_resumes(photos: Path, tmp_path: Path,
                                                   stage: str) -> None:
    out = tmp_path / "scan"
    argv = ["-m", "app", "scan", str(photos), "--layers", LAYER, "--settings",
            str(_settings(tmp_path)), "--out", str(out)]

    def layer_written() -> bool:
        return any(p.is_dir() and not p.name.startswith(".") for p in out.glob("*"))

    ready = {
        "scan": lambda: _workers(proc) and any(out.glob(".partial/*/state.json")),
        "crops": lambda: _workers(proc) and any(out.glob(".staging-*")),
        "writing": layer_written,
    }[stage]
    proc = _start(argv, tmp_path, "killed")
    _kill_when(proc, ready, f"scan during {stage}")

    again = _start(argv, tmp_path, "rerun")
    assert again.wait(timeout=600) == 0, (tmp_path / "rerun.err").read_text()
    text = (tmp_path / "rerun.out").read_text() + (tmp_path / "rerun.err").read_text()
    if stage == "scan":
        assert "scan: resumed an interrupted scan after " in text, text
    assert not _members(again.pid)
    assert any((p / "result.json").is_file() for p in out.glob("*"))


def test_killed_atlas_leaves_no_process_and_resumes_its_collection(photos: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "atlas"
    argv = ["-m", "app", "atlas", str(photos), "--layer", LAYER, "--grid", "6",
            "--per-image", "4", "--batch-size", "1", "--icon-steps", "0", "--settings",
            str(_settings(tmp_path)), "--out", str(out), "--json"]
    proc = _start(argv, tmp_path, "killed")  # killed once its first checkpoint is written
    _kill_when(proc, lambda: any(out.glob(".partial/*/state.json")), "atlas while collecting")
    assert not (out / "meta.json").exists()

    again = _start(argv, tmp_path, "rerun")
    assert again.wait(timeout=600) == 0, (tmp_path / "rerun.err").read_text()
    err = (tmp_path / "rerun.err").read_text()
    assert "(resumed at " in err, err
    assert "deepvis: error" not in err and "Traceback" not in err, err
    assert not _members(again.pid)
    doc = json.loads((tmp_path / "rerun.out").read_text())
    assert doc["images"] == len(list(photos.iterdir())) and doc["cells"]
    assert doc["samples"] == 4 * doc["images"]  # every image's rows once, none twice
    assert not (out / ".partial").exists()


DRIVER = """
import sys, torch
from app.core.jobs import run_job
from app.engine.analyses.patches import scan
from app.engine.runtime.models import load_bundled
loaded = load_bundled(torch.device("cpu"))
run_job(scan(loaded, sys.argv[1], [sys.argv[2]], top_k=3, batch_size=2, workers=2,
             out=sys.argv[3], checkpoint_every=1, mp_context=sys.argv[4]))
"""


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_workers_of_every_start_method_die_with_the_job(photos: Path, tmp_path: Path,
                                                        method: str) -> None:
    """The window starts workers through a forkserver (whose server is one more process)
    or spawn: a killed job leaves none of them either."""
    out = tmp_path / "scan"
    proc = _start(["-c", DRIVER, str(photos), LAYER, str(out), method], tmp_path, method)
    _kill_when(proc, lambda: len(_members(proc.pid)) >= 3
               and any(out.glob(".partial/*/state.json")), f"a {method} scan")
