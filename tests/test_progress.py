"""The commands' progress bar: counts and a time left from the start, and a render's units.

`deepvis render` showed only "40/512" steps (no units, no time left, and nothing at all until
the first step), and `deepvis catalog` only the step of its current render, never how many
renders and pages there are (issue 22.14).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from test_featurevis_modern import Conv, loaded_of

from app.cli.progress import TextProgress, timing
from app.core.jobs import Progress, run_job
from app.engine.analyses.featurevis.presets import get_preset
from app.engine.analyses.featurevis.render import render_units


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_bar_says_how_far_and_how_long_is_left_from_the_start():
    clock, out = Clock(), io.StringIO()
    bar = TextProgress("job", out, every_s=0.0, now=clock)
    bar(Progress(0, 4))
    clock.t += 10  # the first of 4 steps took 10 s: 30 s to go
    bar(Progress(1, 4))
    clock.t += 20  # 3 of 4 in 30 s: 10 s to go
    bar(Progress(3, 4, "stage: 3 of 4"))
    clock.t += 10
    bar(Progress(4, 4))
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("0/4  0:00 elapsed · ETA --:--")
    assert lines[1].endswith("1/4  25 % · 0:10 elapsed · ETA 0:30")
    assert lines[2].endswith("stage: 3 of 4  75 % · 0:30 elapsed · ETA 0:10")
    assert lines[3].endswith("4/4  done in 0:40")


def test_a_job_that_times_itself_is_shown_as_it_is():
    @dataclass(frozen=True, kw_only=True)
    class Timed(Progress):
        eta_s: float

        def line(self) -> str:
            return f"{self.done}/{self.total} ETA {self.eta_s:.0f} s"

    out = io.StringIO()
    TextProgress("scan", out, now=Clock())(Timed(done=5, total=10, eta_s=7.0))
    assert out.getvalue() == "scan: [############------------] 5/10 ETA 7 s\n"


@pytest.mark.parametrize(("done", "total", "seconds", "text"), [
    (0, 0, 5.0, "0:05 elapsed · ETA --:--"),
    (2, 8, 90.0, "25 % · 1:30 elapsed · ETA 4:30"),
    (8, 8, 3725.0, "done in 1:02:05"),
])
def test_timing(done, total, seconds, text):
    assert timing(done, total, seconds) == text


def test_a_render_counts_its_units_over_its_batches():
    side = 32
    preset = get_preset("fast").with_overrides(steps=3, size=side)
    seen: list = []
    result = run_job(render_units(loaded_of(Conv(), side), "b", [0, 1, 2, 3, 4], preset,
                                  batch_size=2), seen.append)
    assert result.units == (0, 1, 2, 3, 4)
    assert [p.units_total for p in seen] == [5] * len(seen)
    finals = [p.units_done for p in seen if p.final]
    assert finals == [2, 4, 5]  # batches of 2, 2 and 1
    lines = [p.line() for p in seen]
    assert lines[0] == "units 0/5 · step 1/9"
    assert "units 2/5 · step 4/9" in lines
    assert lines[-1] == "units 5/5 · step 9/9"


def test_deepvis_render_says_what_it_renders_at_once_then_units_and_time_left(tmp_path,
                                                                             capsys):
    from app.cli import main

    settings = tmp_path / "s.toml"
    settings.write_text(f"[cache]\ndir = '{tmp_path / 'cache'}'\n")
    assert main(["render", "--layer", "_blocks.1", "--units", "0-2", "--steps", "2",
                 "--size", "32", "--batch", "2", "--no-cache", "--out", str(tmp_path / "png"),
                 "--settings", str(settings), "--device", "cpu"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("render: 3 units of _blocks.1, fast preset, 2 steps at 32 px, "
                      "in 2 batches of up to 2")
    bars = [line for line in err if line.startswith("render: [")]
    assert bars[-1].endswith("units 3/3 · step 4/4  done in " + bars[-1].rsplit(" ", 1)[-1])
    assert all("units " in line and (" ETA " in line or "done in" in line) for line in bars)
