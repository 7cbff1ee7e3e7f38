"""Where the app's diagnostics go: a log file, not the user's terminal.

torch's deprecation warnings, Qt's platform chatter ("This plugin does not support
propagateSizeHints()") and our own log records are for whoever debugs, not for someone
watching a terminal: they go to `deepvis.log` in the user's log folder (or $DEEPVIS_LOG),
rotated. What the user must see (an error, a result) is printed by the commands themselves.

OpenCV's C++ logger writes to stderr and has no hook Python could route to the log, so it is
kept to errors instead ("imread_(...): can't open/read file" is a cache miss, not news); it
reads OPENCV_LOG_LEVEL once, when cv2 is first imported, which the commands do lazily, after
this. libpng's warnings bypass it; `capture.images` drops the chunk they come from.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import warnings
from pathlib import Path

from platformdirs import user_log_dir

LOG_NAME = "deepvis.log"
_MAX_BYTES = 1 << 20  # one file of 1 MiB, and one older


class _LogFile(logging.handlers.RotatingFileHandler):
    """Our handler: a second `route_to_log` finds it and adds no other."""


def default_log_file() -> Path:
    """$DEEPVIS_LOG if set, else `deepvis.log` in the user's log folder."""
    configured = os.environ.get("DEEPVIS_LOG")
    return Path(configured) if configured else Path(user_log_dir("deepvis")) / LOG_NAME


def route_to_log(path: Path | None = None) -> Path | None:
    """Send warnings and log records to `path` (default: the user's log folder).

    Returns the file, or None when it cannot be written (then only OpenCV is quietened: a
    read-only home must not stop the app). Calling it again changes nothing.
    """
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # a user's own setting wins
    root = logging.getLogger()
    for existing in root.handlers:
        if isinstance(existing, _LogFile):
            return Path(existing.baseFilename)
    target = path if path is not None else default_log_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handler = _LogFile(target, maxBytes=_MAX_BYTES, backupCount=1, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # warnings.warn → the "py.warnings" logger → the file
    warnings.simplefilter("default")  # each distinct warning once, not silenced
    return target
