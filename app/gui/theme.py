"""The dark look: one palette, one style sheet and the few colours the panes paint with."""

from __future__ import annotations

from PyQt6.QtGui import QColor, QPalette
from PyQt6.QtWidgets import QApplication

BACKGROUND = "#16181d"
PANEL = "#1f2229"
PANEL_LIGHT = "#2a2e37"
BORDER = "#343945"
TEXT = "#dfe3ea"
TEXT_DIM = "#8b93a3"
ACCENT = "#f5a524"  # selected unit, bars: warm so it stands out against viridis tiles
ERROR = "#ff6b6b"
WARNING = "#ffc857"
FROZEN = "#6bc5ff"

STYLE_SHEET = f"""
QMainWindow, QWidget#central {{ background: {BACKGROUND}; }}
QWidget {{ color: {TEXT}; }}
QFrame#panel {{ background: {PANEL}; border: 1px solid {BORDER}; border-radius: 6px; }}
QLabel#paneTitle {{ color: {TEXT}; font-weight: 600; padding: 2px 4px; }}
QLabel#paneInfo {{ color: {TEXT_DIM}; padding: 0px 4px; }}
QLabel#placeholder {{ color: {TEXT_DIM}; font-size: 15px; background: {BACKGROUND}; }}
QListWidget {{
    background: {BACKGROUND}; border: none; outline: none;
    font-family: "DejaVu Sans Mono", "Menlo", "Consolas", monospace; font-size: 12px;
}}
QListWidget::item {{ padding: 3px 4px; }}
QListWidget::item:selected {{ background: {PANEL_LIGHT}; color: {ACCENT}; }}
QListWidget::item:hover {{ background: #23262e; }}
QStatusBar {{ background: {PANEL}; border-top: 1px solid {BORDER}; }}
QStatusBar::item {{ border: none; }}
QStatusBar QLabel {{ padding: 0px 8px; color: {TEXT_DIM}; }}
QMenuBar {{ background: {PANEL}; }}
QMenuBar::item:selected {{ background: {PANEL_LIGHT}; }}
QMenu {{ background: {PANEL}; border: 1px solid {BORDER}; }}
QMenu::item:selected {{ background: {PANEL_LIGHT}; }}
QMenu::item:disabled {{ color: {TEXT_DIM}; }}
QSplitter::handle {{ background: {BACKGROUND}; }}
QScrollBar:vertical {{ background: {BACKGROUND}; width: 10px; }}
QScrollBar::handle:vertical {{ background: {PANEL_LIGHT}; border-radius: 4px; min-height: 24px; }}
QScrollBar::add-line, QScrollBar::sub-line {{ height: 0px; }}
QPlainTextEdit {{ background: {BACKGROUND}; border: 1px solid {BORDER}; }}
"""


def apply_dark_theme(app: QApplication) -> None:
    """Fusion with a dark palette, so native dialogs and menus match the panes."""
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: PANEL,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: BACKGROUND,
        QPalette.ColorRole.AlternateBase: PANEL,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: PANEL_LIGHT,
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.Highlight: "#3a5f8f",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: PANEL_LIGHT,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.PlaceholderText: TEXT_DIM,
    }
    for role, color in roles.items():
        palette.setColor(role, QColor(color))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(TEXT_DIM))
    palette.setColor(
        QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor(TEXT_DIM)
    )
    app.setPalette(palette)
