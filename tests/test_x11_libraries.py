"""The live command names the X11 libraries Qt's xcb plugin lacks, instead of Qt's abort."""

from __future__ import annotations

import pytest

from app.core import x11_libraries
from app.core.x11_libraries import (
    XCB_PLUGIN_LIBRARIES,
    check_xcb_libraries,
    missing_libraries,
    uses_xcb,
)

ABSENT = {"libxcb-cursor.so.0", "libxkbcommon-x11.so.0"}


def loader_without(absent: set[str]):
    """A stand-in for ctypes.CDLL on a system that lacks `absent`; records what it loads."""
    tried: list[str] = []

    def load(soname: str) -> object:
        tried.append(soname)
        if soname in absent:
            raise OSError(f"{soname}: cannot open shared object file: No such file or directory")
        return object()

    load.tried = tried  # type: ignore[attr-defined]
    return load


def test_the_missing_libraries_are_named_with_their_install_line():
    load = loader_without(ABSENT)
    assert missing_libraries(XCB_PLUGIN_LIBRARIES, load) == ["libxcb-cursor.so.0",
                                                              "libxkbcommon-x11.so.0"]
    line = check_xcb_libraries({}, load, platform="linux")
    assert line is not None and "\n" not in line
    assert "libxcb-cursor.so.0, libxkbcommon-x11.so.0" in line
    assert "apt-get install libxcb-cursor0 libxkbcommon-x11-0" in line
    assert "Reinstalling" not in line


def test_nothing_is_said_when_every_library_loads():
    load = loader_without(set())
    assert check_xcb_libraries({"DISPLAY": ":0"}, load, platform="linux") is None
    assert load.tried == list(XCB_PLUGIN_LIBRARIES)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("env", "platform", "xcb"), [
    ({}, "linux", True),
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", True),
    ({"QT_QPA_PLATFORM": "xcb:nograb"}, "linux", True),
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),
    ({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux", False),
    ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", False),
    ({"XDG_SESSION_TYPE": "wayland"}, "linux", False),
    ({"XDG_SESSION_TYPE": "x11", "DISPLAY": ":0"}, "linux", True),
    ({}, "darwin", False),
    ({}, "win32", False),
])
def test_only_a_platform_that_loads_the_xcb_plugin_is_checked(env, platform, xcb):
    assert uses_xcb(env, platform) is xcb
    load = loader_without(ABSENT)
    assert (check_xcb_libraries(env, load, platform=platform) is not None) is xcb
    if not xcb:
        assert load.tried == []  # type: ignore[attr-defined]


def test_the_real_loader_tells_a_present_library_from_an_absent_one():
    libraries = {"libc.so.6": "libc6", "libdeepvis-no-such-library.so.0": "nothing"}
    assert missing_libraries(libraries) == ["libdeepvis-no-such-library.so.0"]


def test_the_window_command_exits_2_with_the_line_before_opening_anything(monkeypatch, capsys):
    import app.desktop
    from app.cli import main

    opened: list[object] = []
    monkeypatch.setattr(app.desktop, "launch_window", lambda *a, **k: opened.append(a) or 0)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    absent = {"libxcb-deepvis-test.so.0": "libxcb-deepvis-test0"}
    monkeypatch.setattr(x11_libraries, "XCB_PLUGIN_LIBRARIES", {**XCB_PLUGIN_LIBRARIES, **absent})
    assert main([]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "libxcb-deepvis-test.so.0" in err and "apt-get install libxcb-deepvis-test0" in err
    assert opened == []
