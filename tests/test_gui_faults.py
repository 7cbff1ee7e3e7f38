"""The window when things go wrong (issue 22): a source or model that fails says so in the
panes, and `--screenshot` ends with the reason instead of waiting for frames that never come."""

from __future__ import annotations

import time

import pytest
from fake_backend import FakeBackend
from gui_driver import WindowDriver

from app.core.messages import NoticeLevel
from app.core.settings import GuiSettings, Settings
from app.gui.run import run_window

pytest.importorskip("pytestqt")

SETTINGS = Settings(gui=GuiSettings(width=1400, height=900, refresh_ms=10))


def _no_source_yet() -> FakeBackend:
    backend = FakeBackend(ready=False)
    backend.emit(FakeBackend.model_ready())
    return backend


def test_a_bad_source_is_named_in_the_panes_not_waited_for(qtbot) -> None:
    ui = WindowDriver.open(qtbot, _no_source_yet(), SETTINGS)
    ui.open_source("/photos/broken.jpg")
    ui.wait_until(lambda: "broken.jpg" in ui.input_placeholder())
    reason = "cannot open /photos/broken.jpg: not an image, video or folder"
    assert reason in ui.input_placeholder()
    assert "Waiting" not in ui.input_placeholder()
    placeholder = ui.grid_placeholder()
    assert placeholder is not None and reason in placeholder  # still no image: it says why
    assert reason in ui.unit_placeholder()
    assert any(n.level is NoticeLevel.ERROR and reason in n.text for n in ui.notices())


def test_a_good_source_after_a_bad_one_waits_for_frames_again(qtbot, tmp_path) -> None:
    ui = WindowDriver.open(qtbot, _no_source_yet(), SETTINGS)
    ui.open_source("/photos/broken.jpg")
    ui.wait_until(lambda: "broken.jpg" in ui.input_placeholder())
    ui.open_source(str(tmp_path / "cat.png"))
    ui.wait_for_results(1)
    assert ui.input_placeholder() == "Waiting for frames…"
    assert ui.unit_placeholder() == "Waiting for frames…"


def test_a_model_that_fails_with_none_to_fall_back_on_is_named_in_the_panes(qtbot) -> None:
    backend = FakeBackend(ready=False)
    ui = WindowDriver.open(qtbot, backend, SETTINGS)
    ui.window.load_model("broken")
    ui.wait_until(lambda: "cannot load model 'broken'" in (ui.grid_placeholder() or ""))
    assert (ui.grid_placeholder() or "").startswith("No model")
    assert "Loading model" not in ui.unit_placeholder()
    assert ui.model_text() == "no model (loading failed)"


@pytest.mark.parametrize("failing", ["source", "model"])
def test_screenshot_exits_2_with_the_reason_when_no_frame_will_come(
        qtbot, tmp_path, capsys, failing: str) -> None:
    backend = _no_source_yet() if failing == "source" else FakeBackend(ready=False)
    out = tmp_path / "shot.png"
    t0 = time.monotonic()
    code = run_window(backend, SETTINGS, screenshot=str(out), frames=3,
                      initial_source="/photos/broken.jpg" if failing == "source" else None,
                      initial_model="broken" if failing == "model" else None,
                      screenshot_timeout_s=60)
    assert code == 2
    assert time.monotonic() - t0 < 20  # not the 60 s fallback
    assert not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    expected = ("cannot open /photos/broken.jpg: not an image, video or folder"
                if failing == "source" else "cannot load model 'broken'")
    assert err == [f"deepvis: {expected}"]
    assert backend.stop_calls == 1


def test_a_bad_source_while_one_shows_keeps_it_and_the_screenshot(qtbot, tmp_path) -> None:
    backend = FakeBackend()  # a source is showing before the bad one
    out = tmp_path / "shot.png"
    code = run_window(backend, SETTINGS, screenshot=str(out), frames=3,
                      initial_source="/photos/broken.jpg", screenshot_timeout_s=60)
    assert code == 0 and out.is_file()
