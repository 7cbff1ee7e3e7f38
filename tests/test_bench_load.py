"""`deepvis bench --load N`: the competing processes, the spread it reports, and the
OpenMP wait policy the entry point sets before torch loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.cli import main, quiet_openmp_waits
from app.session.bench import competing_load, spread
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # exited, waiting for whoever adopted it to reap it


def test_competing_load_runs_busy_processes_and_leaves_none_behind():
    with competing_load(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
        assert wait_until(lambda: all(_cpu_ticks(p.pid) > 5 for p in procs), timeout=30)
    assert all(p.poll() is not None for p in procs)
    assert all(not Path(f"/proc/{p.pid}").exists() for p in procs)  # reaped, too


def test_a_busy_process_exits_by_itself_when_the_bench_dies_without_cleaning_up():
    code = ("import os\nfrom app.session.bench import competing_load\n"
            "procs = competing_load(1).__enter__()\nprint(procs[0].pid, flush=True)\n"
            "os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
                         check=True).stdout
    pid = int(out.split()[-1])
    assert wait_until(lambda: _gone(pid), timeout=10)


def test_spread_is_median_min_and_max():
    assert spread([0.9, 0.5, 1.2, 0.8]) == {"median": 0.85, "min": 0.5, "max": 1.2}


def test_openmp_threads_sleep_when_idle_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    code = ("import os\nfrom app.cli import quiet_openmp_waits\nquiet_openmp_waits()\n"
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=60, check=True)
    assert run.stdout.strip() == "PASSIVE"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, cwd=ROOT, timeout=60,
                         check=True)
    assert run.stdout.strip() == "ACTIVE"
    # once torch is loaded the OpenMP runtime has read the policy: setting it is pointless
    assert "torch" in sys.modules
    environ: dict[str, str] = {}
    quiet_openmp_waits(environ)
    assert environ == {}


def test_bench_rejects_a_negative_load(capsys):
    assert main(["bench", "--load", "-1"]) == 2
    assert "--load must be 0 or more" in capsys.readouterr().err


def test_bench_reports_the_spread_over_rounds_beside_a_busy_process(capsys):
    code = main(["bench", "--json", "--frames", "3", "--rounds", "2", "--load", "1",
                 "--no-gui", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["competing_processes"] == 1
    assert len(doc["ratio_rounds"]) == 2
    expected = [p / b for b, p in zip(doc["bare_fps_rounds"], doc["pipeline_fps_rounds"],
                                      strict=True)]
    assert all(abs(a - b) < 0.01 for a, b in zip(doc["ratio_rounds"], expected, strict=True))
    low, mid, high = (doc["ratio_spread"][k] for k in ("min", "median", "max"))
    assert low == min(doc["ratio_rounds"]) and high == max(doc["ratio_rounds"])
    assert low <= mid <= high
