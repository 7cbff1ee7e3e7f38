"""The action table: every menu item, keyboard shortcut and help row, declared once.

Menus, shortcuts and the help overlay are all built from one table, so they cannot
disagree: every action with keys is a row of the help card (its `help`, else its text),
and `Gesture` rows add what the mouse does. The rows come from the window's feature
modules (`app/gui/features/`), each with the callable it triggers (with `args`, or, for a
checkable action outside a radio `group`, with its checked state); `LAYOUT` says where
they stand: the help card's order and, within each menu, the menu's order. A row no
`LAYOUT` entry names goes at the end (of the help card and its menu). The menus are created
up front in `MENUS` order. The model list is only known at run time: `with_models` puts one
row per model where the `ModelList` row stands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from PyQt6.QtCore import QObject, Qt
from PyQt6.QtGui import QAction, QActionGroup, QKeySequence
from PyQt6.QtWidgets import QMenu, QMenuBar, QWidget

from app.core.messages import ModelChoice
from app.core.requests import Request

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
Slot = Callable[..., object]


@dataclass(frozen=True)
class Action:
    """One menu item and/or shortcut. `menu` is a path ("&File/Open camera"); None: no menu."""

    name: str  # unique; radio items are "group:value"
    text: str
    slot: Slot
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


def radio(group: str, menu: str, slot: Slot, items: Iterable[tuple[Any, str]]) -> list[Action]:
    return [
        Action(f"{group}:{value}", text, slot, menu, args=(value,), checkable=True, group=group)
        for value, text in items
    ]


def cancel_rows(request_types: Iterable[type[Request]], cancel: Callable[[str], None]
                ) -> list[Action]:
    """Analysis → Cancel → …: one row per cancellable request type, off until its job runs
    (a submenu: sixteen greyed rows made the Analysis menu taller than a 768-px screen)."""
    return [Action(f"cancel:{t.kind}", f"Cancel {t.label}", cancel, "&Analysis/&Cancel",
                   args=(t.kind,), enabled=False)
            for t in request_types if t.cancellable]


# Where the features' rows stand: names (a trailing "*" takes every row whose name starts
# with what precedes it, in the features' order), separators, gestures, the model list.
LAYOUT: tuple[str | Separator | Gesture | ModelList, ...] = (
    "previous_unit", "next_unit", "unit_up", "unit_down", "previous_layer", "next_layer",
    "freeze", Separator("&Navigate"), "next_image", "previous_image",
    "cycle_attribution", "attribution:*", Separator("&Analysis"),
    "toggle_ablation", "restore_all", "ablation_mode:*", Separator("&Analysis"),
    "scan", "render_layer", "ablation", "class_units", "accentuate", "invert",
    "activation_grid", "dissect", Separator("&Analysis"),
    "learn_concepts", "rename_concept", "tcav", "audit", "open_report", Separator("&Analysis"),
    "atlas", "session_atlas", Separator("&Analysis"),
    *(f"cancel:{kind}" for kind in ("scan", "render_layer", "ablate", "render", "unit_card",
                                     "dissect", "class_units", "integrated", "accentuate",
                                     "invert", "activation_grid")), "cancel:*",
    "normalization:*", "colormap:*", Separator("&View"), "overlay", "preferred_grid",
    "unit_card", "why", "attribution_tint", "attention", "attention_rollout",
    "grayscale", "concept_labels", "mirror",
    "help", "escape",
    "open_image", "open_folder", "open_video", "camera:*", Separator("&File"),
    "save_screenshot", "export:*", "save_unit_report", Separator("&File"), "quit",
    ModelList("&Model"), Separator("&Model"), "open_checkpoint",
    Gesture("click", "Select the unit under the mouse"),
    Gesture("click map", "In the Unit tab: attribute that position (again: its max)"),
    Gesture("drop", "Drop an image, video or folder on the window to open it"),
)


def assemble(rows: Sequence[Action], layout: Sequence[str | Separator | Gesture | ModelList]
             = LAYOUT) -> tuple[Row, ...]:
    """The table: `rows` (the features' actions) in `layout`'s places, the rest at the end."""
    out: list[Row] = []
    placed: set[str] = set()
    for entry in layout:
        if not isinstance(entry, str):
            out.append(entry)
            continue
        prefix = entry[:-1] if entry.endswith("*") else None
        for row in rows:
            if row.name not in placed and (row.name == entry or (
                    prefix is not None and row.name.startswith(prefix))):
                out.append(row)
                placed.add(row.name)
    out.extend(row for row in rows if row.name not in placed)
    return tuple(out)


def with_models(table: Iterable[Row], choices: list[ModelChoice], load: Slot
                ) -> tuple[Row, ...]:
    """The table with one radio row per model where its `ModelList` row stands."""
    rows: list[Row] = []
    for row in table:
        if not isinstance(row, ModelList):
            rows.append(row)
            continue
        for choice in choices:
            suffix = "offline" if choice.offline else "needs download"
            rows.append(Action(
                f"model:{choice.name}", f"{choice.name}  ({suffix})", load, row.menu,
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
        _connect(action, row, row.slot)
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
