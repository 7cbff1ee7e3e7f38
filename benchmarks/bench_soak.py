"""Soak: does a long live session keep its memory and threads flat?

The real window (offscreen) on the real session, bundled model, every layer hooked, the
bundled sample video re-timed to play faster than inference can take it (so the worker runs
flat out, as with a camera). After a warm-up, resident memory (RSS) and the thread count are
sampled every `--every` results the window shows; the report gives the RSS slope per 1,000
frames (least squares over the samples), the total growth and the threads at each sample.

    .venv/bin/python benchmarks/bench_soak.py [--frames 10000] [--warmup 500] [--json]
    .venv/bin/python benchmarks/bench_soak.py --frames 3000 --tracemalloc 15

`--tracemalloc N` also prints the N Python allocation sites that grew most between the first
and the last sample (slower; for finding what accumulates, not for the figure).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PyQt6.QtCore import QTimer  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402
from report import print_report  # noqa: E402  (benchmarks/report.py, beside this script)

from app.core.malloc_tuning import keep_freed_memory  # noqa: E402
from app.core.settings import load_settings  # noqa: E402
from app.gui.main_window import MainWindow  # noqa: E402
from app.session.live import LiveSession, sample_video  # noqa: E402


def fast_copy_of(video: Path, fps: float, folder: Path) -> Path:
    """The same frames, stamped `fps`: the capture thread then offers them that fast."""
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    h, w = frame.shape[:2]
    out = folder / "fast.avi"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    while ok:
        writer.write(frame)
        ok, frame = cap.read()
    writer.release()
    cap.release()
    return out


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def os_threads() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=10_000, help="results shown after warm-up")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--every", type=int, default=500, help="results between samples")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="N")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    keep_freed_memory()
    settings = load_settings(ROOT / "settings.toml")
    tmp = Path(tempfile.mkdtemp(prefix="deepvis-soak-"))
    settings = dataclasses.replace(settings, cache=dataclasses.replace(settings.cache,
                                                                        dir=str(tmp)))
    video = fast_copy_of(sample_video(), 240.0, tmp)

    app = QApplication.instance() or QApplication(sys.argv[:1])
    session = LiveSession(settings, torch.device("cpu"))
    window = MainWindow(session, settings)
    window.show()
    session.load_model(settings.model.default)
    session.open_source(str(video))
    samples: list[tuple[int, int, int, int]] = []  # (frames after warm-up, RSS KiB, threads)
    state = {"t0": 0.0, "seconds": 0.0}
    snapshots: list[tracemalloc.Snapshot] = []
    target = args.warmup + args.frames

    def on_shown(count: int) -> None:
        if count < args.warmup or (count - args.warmup) % args.every:
            return
        if count == args.warmup:
            state["t0"] = time.perf_counter()
            if args.tracemalloc:
                tracemalloc.start(8)
        samples.append((count - args.warmup, rss_kib(), os_threads(), threading.active_count()))
        if args.tracemalloc and count in (args.warmup + args.every, target):
            snapshots.append(tracemalloc.take_snapshot())
        if count >= target:
            state["seconds"] = time.perf_counter() - state["t0"]
            QTimer.singleShot(0, window.close)

    window.result_shown.connect(on_shown)
    window.closed.connect(app.quit)
    app.exec()
    window.shutdown()

    frames = np.array([s[0] for s in samples], np.float64)
    rss = np.array([s[1] for s in samples], np.float64)
    slope = float(np.polyfit(frames, rss, 1)[0]) * 1000 if len(samples) > 1 else float("nan")
    report = {
        "machine": os.uname().machine, "cpu_threads": torch.get_num_threads(),
        "frames_after_warmup": int(frames[-1]) if len(frames) else 0,
        "seconds": round(state["seconds"], 1),
        "results_per_s": round(frames[-1] / state["seconds"], 1) if state["seconds"] else 0,
        "rss_first_mib": round(rss[0] / 1024, 1), "rss_last_mib": round(rss[-1] / 1024, 1),
        "rss_growth_kib": int(rss[-1] - rss[0]),
        "rss_slope_kib_per_1000_frames": round(slope, 1),
        "os_threads": sorted({s[2] for s in samples}),
        "python_threads": sorted({s[3] for s in samples}),
        "samples": [list(s) for s in samples],
    }
    print_report(report, args.json)
    if len(snapshots) == 2:
        print("\nPython allocations that grew most (tracemalloc):", file=sys.stderr)
        for stat in snapshots[1].compare_to(snapshots[0], "traceback")[: args.tracemalloc]:
            print(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks",
                  file=sys.stderr)
            for line in stat.traceback.format()[-6:]:
                print("    " + line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
