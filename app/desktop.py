"""Composition root: the one place that wires the engine (torch) to the GUI (Qt).

Nothing imports this module but the `deepvis` live command: below it, the GUI knows only
the `LiveBackend` protocol and the session knows no Qt.
"""

from __future__ import annotations

from pathlib import Path

from app.core.settings import Settings


def launch_window(
    settings: Settings,
    source: str,
    layer: str | None = None,
    unit: int | None = None,
    screenshot: Path | None = None,
    frames: int = 30,
) -> int:
    """Open the live window on `source` with the settings' model; returns the exit code."""
    from app.engine.runtime.device import pick_device
    from app.engine.runtime.models import check_model_spec
    from app.gui.qt_messages import route_qt_messages
    from app.gui.run import run_window
    from app.session.live import LiveSession

    route_qt_messages()
    device = pick_device(settings.model.device)
    check_model_spec(settings.model.default)
    session = LiveSession(settings, device)
    # run_window asks the session for the model and source once the window is up
    return run_window(
        session, settings,
        screenshot=str(screenshot) if screenshot else None, frames=frames,
        initial_source=source, initial_model=settings.model.default,
        initial_layer=layer, initial_unit=unit,
    )
