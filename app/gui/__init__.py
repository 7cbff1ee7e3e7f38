"""The Qt window (PyQt6 + pyqtgraph); never imports torch or the engine."""

from app.gui import pyqtgraph_fixes

# before any pane makes its first image: see pyqtgraph_fixes for the leak this avoids
pyqtgraph_fixes.install()
