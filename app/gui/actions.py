"""The action table: every menu item, keyboard shortcut and help row, declared once.

Menus, shortcuts and the help overlay are all built from `ACTIONS`, so they cannot
disagree: every action with keys is a row of the help card (its `help`, else its text),
and `Gesture` rows add what the mouse does. Rows are in help order; the menus are created
up front in `MENUS` order and each action is appended to its menu in table order, so
within a menu the order is the table's too.

`slot` names what the action calls, a method of the window or a dotted path from it
(`view_model.move_unit`): with `args`, or, for a checkable action outside a radio `group`,
with its checked state. The model list is only known at run time: `with_models` puts one
row per model where the `ModelList` row stands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from PyQt6.QtCore import QObject, Qt
from PyQt6.QtGui import QAction, QActionGroup, QKeySequence
from PyQt6.QtWidgets import QMenu, QMenuBar, QWidget

from app.core.messages import (
    AblationMode,
    JobKind,
    ModelChoice,
    Normalization,
)
from app.gui.attribution_view import MODE_TEXT
from app.gui.colormaps import COLORMAP_NAMES
from app.gui.jobs_view import JOB_NAMES
from app.gui.view_model import ATTRIBUTION_CYCLE

MENUS = ("&File", "&Model", "&View", "&Navigate", "&Analysis", "&Help")
CAMERAS = 4  # File → Open camera lists camera 0 to 3
# the panes File → Export pane (and each pane's right-click menu) save: name, menu text
EXPORTABLE_PANES = (
    ("input", "Input"), ("predictions", "Predictions"), ("grid", "Activation grid"),
    ("ablation", "Ablation curves"), ("unit", "Selected unit"), ("layers", "Layers"),
    ("card", "Unit card"), ("blocks", "Why this prediction"), ("frame", "This frame"),
    ("dissection", "Dissection"),
)
# how the help card spells keys Qt spells otherwise
KEY_NAMES = {
    "Right": "→", "Left": "←", "Up": "↑", "Down": "↓", "PgDown": "PgDn", "PgUp": "PgUp",
    "Esc": "Esc",
}


@dataclass(frozen=True)
class Action:
    """One menu item and/or shortcut. `menu` is a path ("&File/Open camera"); None: no menu."""

    name: str  # unique; radio items are "group:value"
    text: str
    slot: str
    menu: str | None
    keys: tuple[str, ...] = ()
    args: tuple[object, ...] = ()
    checkable: bool = False
    group: str | None = None  # a radio group: one of its items is checked
    help: str = ""  # the help card's text for it ("": its menu text)
    tip: str = ""  # tooltip and status tip
    enabled: bool = True


@dataclass(frozen=True)
class Separator:
    menu: str


@dataclass(frozen=True)
class Gesture:
    """A help row for something the mouse does (no action, no menu)."""

    keys: str
    help: str


@dataclass(frozen=True)
class ModelList:
    """Where the model choices go; replaced by `with_models`."""

    menu: str


Row = Action | Separator | Gesture | ModelList


def _radio(group: str, menu: str, slot: str, items: Iterable[tuple[Any, str]]) -> list[Row]:
    return [
        Action(f"{group}:{value}", text, slot, menu, args=(value,), checkable=True, group=group)
        for value, text in items
    ]


ACTIONS: tuple[Row, ...] = (
    Action("previous_unit", "Previous unit", "view_model.move_unit", "&Navigate",
           ("Left",), (0, -1)),
    Action("next_unit", "Next unit", "view_model.move_unit", "&Navigate", ("Right",), (0, 1)),
    Action("unit_up", "Unit one row up", "view_model.move_unit", "&Navigate", ("Up",), (-1, 0)),
    Action("unit_down", "Unit one row down", "view_model.move_unit", "&Navigate",
           ("Down",), (1, 0)),
    Action("previous_layer", "Previous layer", "view_model.step_layer", "&Navigate",
           ("PgUp", "U"), (-1,)),
    Action("next_layer", "Next layer", "view_model.step_layer", "&Navigate",
           ("PgDown", "O"), (1,)),
    Action("freeze", "Freeze frame", "view_model.set_frozen", "&Navigate", ("F",),
           checkable=True),
    Separator("&Navigate"),
    Action("next_image", "Next image in folder", "_on_step_source", "&Navigate", ("N",), (1,)),
    Action("previous_image", "Previous image in folder", "_on_step_source", "&Navigate",
           ("P",), (-1,)),

    Action("cycle_attribution", "Cycle attribution mode", "view_model.cycle_attribution",
           "&Analysis", ("B",)),
    *_radio("attribution", "&Analysis/Attribution", "view_model.set_attribution",
            ((mode, MODE_TEXT[mode].capitalize()) for mode in ATTRIBUTION_CYCLE)),
    Separator("&Analysis"),
    Action("toggle_ablation", "Delete / restore selected unit", "toggle_ablation",
           "&Analysis", ("D",)),
    Action("restore_all", "Restore all deleted units", "restore_all", "&Analysis"),
    *_radio("ablation_mode", "&Analysis/Deleted units output", "view_model.set_ablation_mode",
            ((AblationMode.ZERO, "Zero"), (AblationMode.MEAN, "Running mean"))),
    Separator("&Analysis"),
    Action("scan", "Scan folder for top patches…", "_on_scan_folder", "&Analysis"),
    Action("render_layer", "Render preferred images of this layer", "start_render_layer",
           "&Analysis"),
    Action("ablation", "Ablation curves on a folder…", "_on_ablation_folder", "&Analysis"),
    Action("class_units", "Units the explained class needs, on a folder…",
           "_on_class_units_folder", "&Analysis"),
    Action("accentuate", "Accentuate the unit in this frame", "tabs.accentuate", "&Analysis",
           ("X",), help="What in this frame the unit responds to, as a picture"),
    Action("invert", "Invert this frame from 3 layers", "tabs.invert", "&Analysis", ("V",),
           help="What a few layers keep of this frame, rebuilt from their codes"),
    Action("activation_grid", "Activation grid of this frame", "tabs.activation_grid",
           "&Analysis", ("M",), help="Each position's activation vector as a picture"),
    Action("dissect", "Dissect a folder (concept labels)…", "_on_dissect_folder",
           "&Analysis"),
    Separator("&Analysis"),
    *(Action(f"cancel:{kind.value}", f"Cancel {JOB_NAMES[kind]}", "cancel_job", "&Analysis",
             args=(kind,), enabled=False)
      for kind in (JobKind.SCAN, JobKind.RENDER_LAYER, JobKind.ABLATE, JobKind.RENDER,
                   JobKind.UNIT_CARD, JobKind.DISSECT, JobKind.CLASS_UNITS,
                   JobKind.INTEGRATED, JobKind.ACCENTUATE, JobKind.INVERT,
                   JobKind.ACTIVATION_GRID)),

    *_radio("normalization", "&View/Normalization", "view_model.set_normalization",
            ((Normalization.PER_CHANNEL, "Per channel"), (Normalization.PER_LAYER, "Per layer"))),
    *_radio("colormap", "&View/Colormap", "set_colormap", ((n, n) for n in COLORMAP_NAMES)),
    Separator("&View"),
    Action("overlay", "Unit overlay on input", "_on_overlay_toggled", "&View", checkable=True),
    Action("preferred_grid", "Preferred images in the grid", "_on_preferred_grid_toggled",
           "&View", ("G",), checkable=True,
           help="Grid shows each unit's preferred image / its activations"),
    Action("unit_card", "Unit card", "tabs.toggle_unit_card", "&View", ("C",), checkable=True,
           help="Show / hide the unit card: the selected unit at a glance"),
    Action("why", "Why this prediction", "tabs.toggle_why", "&View", ("W",), checkable=True,
           help="Show / hide the building blocks: channels, groups, dictionary, for a class"),
    Action("attribution_tint", "Tint the grid by attribution to the class", "tabs.set_grid_tint",
           "&View", ("A",), checkable=True,
           help="Tiles orange / blue by how much each channel raises / lowers the class"),
    Action("attention", "Attention on the input (transformers)", "_on_attention_toggled",
           "&View", ("T",), checkable=True,
           help="A transformer's attention from the token under the mouse (else the class "
                "token), at the shown layer's block"),
    Action("attention_rollout", "Attention rollout instead of one block",
           "view_model.set_attention_rollout", "&View", checkable=True),
    Action("concept_labels", "Concept labels on the grid", "_on_concept_labels_toggled",
           "&View", ("L",), checkable=True,
           help="Write each unit's concept (from a dissection) on its tile"),
    Action("mirror", "Mirror camera", "_on_mirror_toggled", "&View", checkable=True),

    Action("help", "Keys", "toggle_help", "&Help", ("H",), help="Show / hide this help"),
    # Esc only closes the card (or drops the attributed position): on the window, no menu
    Action("escape", "Close help", "_on_escape", None, ("Esc",),
           help="Close this help; else attribute the unit's maximum again"),

    Action("open_image", "Open image…", "_on_open_dialog", "&File", ("Ctrl+O",), ("image",)),
    Action("open_folder", "Open folder…", "_on_open_dialog", "&File", ("Ctrl+Shift+O",),
           ("folder",)),
    Action("open_video", "Open video…", "_on_open_dialog", "&File", args=("video",)),
    *(Action(f"camera:{i}", f"Camera {i}", "open_source", "&File/Open camera",
             args=(f"camera:{i}",)) for i in range(CAMERAS)),
    Separator("&File"),
    Action("save_screenshot", "Save screenshot…", "_on_save_screenshot", "&File", ("Ctrl+S",),
           help="Save a screenshot of the window"),
    # also each pane's right-click menu (WindowLayout.add_export_actions)
    *(Action(f"export:{name}", f"{label}…", "_on_export_pane", "&File/Export pane as PNG",
             args=(name,)) for name, label in EXPORTABLE_PANES),
    Action("save_unit_report", "Save unit report…", "_on_save_unit_report", "&File",
           ("Ctrl+R",), help="Save the unit card as one PNG and one HTML page"),
    Separator("&File"),
    Action("quit", "Quit", "close", "&File", ("Ctrl+Q",)),

    ModelList("&Model"),
    Separator("&Model"),
    Action("open_checkpoint", "Open checkpoint…", "_on_open_checkpoint", "&Model"),

    Gesture("click", "Select the unit under the mouse"),
    Gesture("click map", "In the Unit tab: attribute that position (again: its max)"),
    Gesture("drop", "Drop an image, video or folder on the window to open it"),
)


def with_models(table: Iterable[Row], choices: list[ModelChoice]) -> tuple[Row, ...]:
    """The table with one radio row per model where its `ModelList` row stands."""
    rows: list[Row] = []
    for row in table:
        if not isinstance(row, ModelList):
            rows.append(row)
            continue
        for choice in choices:
            suffix = "offline" if choice.offline else "needs download"
            rows.append(Action(
                f"model:{choice.name}", f"{choice.name}  ({suffix})", "load_model", row.menu,
                args=(choice.name,), checkable=True, group="model", tip=choice.description,
            ))
    return tuple(rows)


def keys_text(keys: tuple[str, ...]) -> str:
    """"PgDn / O": keys as the help card shows them."""
    names = []
    for key in keys:
        text = QKeySequence(key).toString(QKeySequence.SequenceFormat.PortableText)
        names.append(KEY_NAMES.get(text, text))
    return " / ".join(names)


def help_rows(table: Iterable[Row]) -> list[tuple[str, str]]:
    """(keys, what they do) for every action with keys and every gesture, in table order."""
    rows = []
    for row in table:
        if isinstance(row, Action) and row.keys:
            rows.append((keys_text(row.keys), row.help or row.text.rstrip("…")))
        elif isinstance(row, Gesture):
            rows.append((row.keys, row.help))
    return rows


def resolve_slot(owner: object, path: str) -> Callable[..., object]:
    """The callable a slot path names, from `owner` ("view_model.move_unit")."""
    target: Any = owner
    for part in path.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"action slot {path!r} is not callable")
    slot: Callable[..., object] = target
    return slot


class ActionSet:
    """The QActions built from a table, by name, and the names in each radio group."""

    def __init__(self, actions: dict[str, QAction], groups: dict[str, list[str]]) -> None:
        self._actions = actions
        self._groups = groups

    def __getitem__(self, name: str) -> QAction:
        return self._actions[name]

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def names(self) -> list[str]:
        return list(self._actions)

    def group(self, group: str) -> list[str]:
        """The names of a radio group's items, in table order."""
        return list(self._groups.get(group, ()))

    def set_checked(self, name: str, checked: bool = True) -> None:
        self._actions[name].setChecked(checked)

    def checked_in(self, group: str) -> str | None:
        """The name of the checked item of a radio group, or None."""
        return next((n for n in self._groups.get(group, ()) if self._actions[n].isChecked()),
                    None)


def build_actions(
    owner: QWidget,
    menu_bar: QMenuBar,
    table: Iterable[Row],
    checked: dict[str, bool] | None = None,
) -> ActionSet:
    """Create the actions of `table` on `owner`, fill `menu_bar`, connect the slots.

    `checked` gives initial states, set before any slot is connected (so a checked mirror
    action does not tell the backend what it already knows).
    """
    checked = checked or {}
    menus: dict[str, QMenu] = {}
    for title in MENUS:
        # made here, not by addMenu(title): PyQt then learns when Qt deletes the menu, and a
        # stale wrapper can never be handed out for a later object at the same address
        menus[title] = QMenu(title, menu_bar)
        menu_bar.addMenu(menus[title])
    actions: dict[str, QAction] = {}
    groups: dict[str, list[str]] = {}
    qt_groups: dict[str, QActionGroup] = {}
    for row in table:
        if isinstance(row, Separator):
            _menu(menus, row.menu).addSeparator()
        if not isinstance(row, Action):
            continue
        if row.name in actions:
            raise ValueError(f"action {row.name!r} is declared twice")
        action = _make_action(owner, row, checked.get(row.name, False))
        if row.group is not None:
            if row.group not in qt_groups:
                qt_groups[row.group] = QActionGroup(owner)
            action.setActionGroup(qt_groups[row.group])
            groups.setdefault(row.group, []).append(row.name)
        _connect(action, row, resolve_slot(owner, row.slot))
        if row.menu is None:
            owner.addAction(action)
        else:
            menu = _menu(menus, row.menu)
            menu.addAction(action)
            if row.tip:
                menu.setToolTipsVisible(True)
        actions[row.name] = action
    return ActionSet(actions, groups)


def _make_action(owner: QObject, row: Action, checked: bool) -> QAction:
    action = QAction(row.text, owner)
    if row.keys:
        action.setShortcuts([QKeySequence(k) for k in row.keys])
        # shortcuts fire whichever child has focus, the layer list included
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    action.setCheckable(row.checkable)
    action.setChecked(checked)
    action.setEnabled(row.enabled)
    if row.tip:
        action.setToolTip(row.tip)
        action.setStatusTip(row.tip)
    return action


def _connect(action: QAction, row: Action, slot: Callable[..., object]) -> None:
    if row.checkable and row.group is None:
        action.toggled.connect(lambda on: slot(on))
    else:
        args = row.args
        action.triggered.connect(lambda _checked=False: slot(*args))


def _menu(menus: dict[str, QMenu], path: str) -> QMenu:
    """The menu at `path`, creating submenus ("&File/Open camera") where they are first used."""
    if path in menus:
        return menus[path]
    parent_path, _, title = path.rpartition("/")
    if not parent_path:
        raise ValueError(f"menu {path!r} is not one of {MENUS}")
    parent = _menu(menus, parent_path)
    sub = QMenu(title, parent)
    parent.addMenu(sub)
    menus[path] = sub
    return sub
