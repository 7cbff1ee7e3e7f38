"""Does this Linux have the X11 client libraries that Qt's xcb platform plugin needs?

Without them Qt prints "Reinstalling the application may fix this problem" and aborts the
process; the one useful line (which library is missing) is a warning that goes to the log.
So before the window is made, the live command loads each library the plugin links against
(its DT_NEEDED entries, PyQt6 6.x wheels) by name, as the dynamic loader would, and names the
missing ones with the line that installs them. Only the libraries outside the Qt wheel are
listed: the wheel brings its own Qt, and the libraries Qt's core needs (fontconfig, EGL) are
also needed by the offscreen platform, which runs everywhere the tests do.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Mapping

# soname → Debian/Ubuntu package
XCB_PLUGIN_LIBRARIES: dict[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0",  # needed since Qt 6.5, the one most often absent
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libGL.so.1": "libgl1",
}


def uses_xcb(env: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether Qt will load its xcb plugin first under `env` (the process environment).

    QT_QPA_PLATFORM decides when set (its first entry: "offscreen", "wayland;xcb" do not
    start with xcb). Unset, Qt on Linux picks xcb, unless the session is Wayland's, where it
    tries its wayland plugin first.
    """
    if not platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0].strip() == "xcb"
    wayland = bool(env.get("WAYLAND_DISPLAY")) or env.get("XDG_SESSION_TYPE") == "wayland"
    return not wayland


def missing_libraries(libraries: Mapping[str, str],
                      load: Callable[[str], object] = ctypes.CDLL) -> list[str]:
    """The sonames in `libraries` that `load` (the dynamic loader: raises OSError when a
    library or one of its own dependencies is not found) cannot load, in table order."""
    missing = []
    for soname in libraries:
        try:
            load(soname)
        except OSError:
            missing.append(soname)
    return missing


def missing_message(missing: list[str], libraries: Mapping[str, str]) -> str:
    """One line naming the missing libraries and the command that installs them."""
    packages = " ".join(dict.fromkeys(libraries[s] for s in missing))
    return (f"the window needs the X11 client libraries {', '.join(missing)}, which this "
            f"system lacks (Qt's xcb platform); install them (Debian/Ubuntu: sudo apt-get "
            f"install {packages}), or run without a window with QT_QPA_PLATFORM=offscreen")


def check_xcb_libraries(env: Mapping[str, str],
                        load: Callable[[str], object] = ctypes.CDLL,
                        libraries: Mapping[str, str] | None = None,
                        platform: str = sys.platform) -> str | None:
    """None when Qt will not use xcb or finds all it needs, else `missing_message`.

    `libraries`: soname → package, default `XCB_PLUGIN_LIBRARIES`."""
    if not uses_xcb(env, platform):
        return None
    if libraries is None:
        libraries = XCB_PLUGIN_LIBRARIES
    missing = missing_libraries(libraries, load)
    return missing_message(missing, libraries) if missing else None
