"""Diagnostics go to the log file, not the terminal: Python warnings and Qt's messages."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from pathlib import Path

from app.core.logs import route_to_log

ROOT = Path(__file__).resolve().parents[1]


def test_warnings_and_records_go_to_the_log_file_once(tmp_path, capsys):
    path = tmp_path / "logs" / "deepvis.log"
    root = logging.getLogger()
    handlers = list(root.handlers)
    for handler in handlers:  # an earlier test's `deepvis` run installed the session's one
        root.removeHandler(handler)
    logging.captureWarnings(False)  # so route_to_log hooks warnings inside pytest's capture
    try:
        assert route_to_log(path) == path
        assert route_to_log(tmp_path / "other.log") == path  # one handler, however often
        warnings.warn("torch.jit is deprecated, a test says", FutureWarning, stacklevel=1)
        logging.getLogger("app.test").info("a record for whoever debugs")
        for handler in root.handlers:
            handler.flush()
        text = path.read_text(encoding="utf-8")
        assert "torch.jit is deprecated, a test says" in text and "a record for" in text
        assert "deprecated" not in capsys.readouterr().err
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        logging.captureWarnings(False)


def test_qt_messages_reach_the_log_not_the_terminal(tmp_path):
    log = tmp_path / "qt.log"
    code = (
        "import os; os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
        "from app.core.logs import route_to_log; route_to_log()\n"
        "from app.gui.qt_messages import route_qt_messages; route_qt_messages()\n"
        "from PyQt6.QtCore import qWarning; qWarning('a plugin grumbles')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"DEEPVIS_LOG": str(log), "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert "a plugin grumbles" not in proc.stderr
    assert "WARNING qt: a plugin grumbles" in log.read_text(encoding="utf-8")


def test_a_fatal_qt_message_comes_with_the_platform_warning_that_explains_it(tmp_path):
    # Qt's abort says only "Reinstalling the application may fix this problem"; what is
    # wrong (a plugin or a library it needs) was a qt.qpa warning just before, in the log
    log = tmp_path / "qt.log"
    code = (
        "import os; os.environ['QT_QPA_PLATFORM'] = 'deepvis-no-such-platform'\n"
        "from app.core.logs import route_to_log; route_to_log()\n"
        "from app.gui.qt_messages import route_qt_messages; route_qt_messages()\n"
        "from PyQt6.QtCore import qWarning; qWarning('an unrelated grumble')\n"
        "from PyQt6.QtWidgets import QApplication; QApplication([])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"DEEPVIS_LOG": str(log), "PATH": ""})
    assert proc.returncode != 0  # Qt aborts
    assert 'platform plugin "deepvis-no-such-platform"' in proc.stderr
    assert "Reinstalling" in proc.stderr
    assert "an unrelated grumble" not in proc.stderr
