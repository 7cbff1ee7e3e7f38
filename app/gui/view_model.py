"""What the user is looking at, as one plain QObject: the panes follow it, the backend gets it.

Selection (layer, unit), the frozen flag, normalization, attribution mode and position,
deleted units and what they output: every change goes through a method here, which sends
the new `ViewState` (`view_changed`) and tells the views what changed. Keys, menus, clicks
and scripts all call the same methods, so a state cannot be reached one way and not another.

Two rules live here and nowhere else: a new (layer, unit) selection asks for that unit's
patches and preferred image once (`unit_requested`), and it forgets the position being
attributed, which means nothing in another unit's map. No widget is touched from here.
"""

from __future__ import annotations

from PyQt6.QtCore import QObject, pyqtSignal

from app.core.messages import LOGITS, AblationMode, AttributionMode, LayerInfo, Normalization
from app.core.tiling import GridGeometry
from app.core.view import (
    AttentionView,
    AttributionView,
    BlocksView,
    ColourView,
    DeletionView,
    ViewState,
)

ATTRIBUTION_CYCLE = (
    AttributionMode.OFF, AttributionMode.GRADIENT, AttributionMode.DECONVNET,
    AttributionMode.GUIDED,
)


class ViewModel(QObject):
    """The selection and the view modes; `view_state()` is what the backend is asked to show."""

    view_changed = pyqtSignal(object)  # ViewState: send it to the backend
    unit_requested = pyqtSignal(str, int)  # a new (layer, unit): ask for its patches and image
    selection_changed = pyqtSignal()  # layer or unit changed (after view_changed)
    layers_changed = pyqtSignal()  # a new model's layers (the selection is reset)
    frozen_changed = pyqtSignal(bool)
    normalization_changed = pyqtSignal(object)  # Normalization
    attribution_changed = pyqtSignal(object)  # AttributionMode
    attribution_at_changed = pyqtSignal(object)  # tuple[int, int] | None
    ablation_changed = pyqtSignal()  # units deleted or restored
    ablation_mode_changed = pyqtSignal(object)  # AblationMode
    classes_changed = pyqtSignal()  # the explained class or the one compared with

    def __init__(
        self, normalization: Normalization = Normalization.PER_CHANNEL,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._layers: tuple[LayerInfo, ...] = ()
        self._layer: str | None = None
        self._unit = 0
        self._normalization = normalization
        self._frozen = False
        self._grid_aspect = 1.0
        self._attribution = AttributionMode.OFF
        self._class_names: tuple[str, ...] = ()
        self._unit_names: dict[str, tuple[str, ...]] = {}  # a concept layer's names
        self._explained: int | None = None
        self._versus: int | None = None
        self._explain = False
        self._attention = False
        self._attention_query: tuple[int, int] | None = None
        self._rollout = False
        self._grayscale = False  # the frame fed in grayscale (colour or shape?)
        self._attribution_at: tuple[int, int] | None = None
        self._ablated: dict[str, set[int]] = {}  # layer → deleted units
        self._ablation_mode = AblationMode.ZERO
        # the parts of features that keep their own state (the Atlas tab's), by kind
        self._parts: dict[type, object] = {}
        self._requested: tuple[str, int] | None = None  # the last unit_requested
        # the layout on screen, for arrow keys and for a unit count before a model is known
        self._shown: tuple[str, GridGeometry] | None = None

    # ------------------------------------------------------------------ reading

    @property
    def layers(self) -> tuple[LayerInfo, ...]:
        return self._layers

    @property
    def layer(self) -> str | None:
        """The selected layer; None until a model is ready."""
        return self._layer

    @property
    def unit(self) -> int:
        return self._unit

    @property
    def normalization(self) -> Normalization:
        return self._normalization

    @property
    def frozen(self) -> bool:
        return self._frozen

    @property
    def attribution(self) -> AttributionMode:
        return self._attribution

    @property
    def attribution_at(self) -> tuple[int, int] | None:
        """The (y, x) of the unit's map being attributed; None: its maximum."""
        return self._attribution_at

    @property
    def ablation_mode(self) -> AblationMode:
        return self._ablation_mode

    def view_state(self) -> ViewState:
        """What the backend is asked to show."""
        return ViewState(
            layer=self._layer, unit=self._unit, normalization=self._normalization,
            frozen=self._frozen, grid_aspect=self._grid_aspect, parts=(
                AttributionView(self._attribution, self._attribution_at),
                DeletionView(self.ablated_state(), self._ablation_mode),
                BlocksView(self._explain, self._explained, self._versus),
                AttentionView(self._attention, self._attention_query, self._rollout),
                ColourView(self._grayscale),
                *self._parts.values(),
            ),
        )

    def set_part(self, part: object) -> None:
        """Put a live stage's view part (a frozen dataclass, `app/core/view.py`) in the view,
        in place of the one of its kind; its default turns the stage off. For the parts of
        features that keep their own state (the Atlas tab): not the kinds built above."""
        # absent is its default: setting the default then sends nothing (a new model's
        # reset would otherwise send a view before the model's layer is chosen)
        if self._parts.get(type(part), type(part)()) != part:
            self._parts[type(part)] = part
            self._send_view()
        else:
            self._parts[type(part)] = part

    @property
    def attention(self) -> bool:
        return self._attention

    def set_attention(self, on: bool) -> None:
        """A transformer's attention over the input, or not."""
        if on != self._attention:
            self._attention = on
            self._send_view()

    @property
    def grayscale(self) -> bool:
        return self._grayscale

    def set_grayscale(self, on: bool) -> None:
        """The network fed the frame in grayscale (its luminance in all three channels)."""
        if on != self._grayscale:
            self._grayscale = on
            self._send_view()

    def set_attention_rollout(self, on: bool) -> None:
        if on != self._rollout:
            self._rollout = on
            self._send_view()

    def set_attention_query(self, query: tuple[int, int] | None) -> None:
        """The token the attention is from: a (y, x) of the grid, None for the class token."""
        if query != self._attention_query:
            self._attention_query = query
            if self._attention:
                self._send_view()

    @property
    def explained_class(self) -> int | None:
        return self._explained

    @property
    def versus_class(self) -> int | None:
        return self._versus

    @property
    def explaining(self) -> bool:
        return self._explain

    def pick_class(self, index: int) -> None:
        """A prediction bar clicked: explain that class, and select its class unit."""
        self.explain_class(index)
        self.select(LOGITS, index)

    def explain_class(self, index: int) -> None:
        """Explain that class at the layer shown (the Why tab: the selection stays)."""
        if index != self._explained:
            self._explained = index
            if self._versus == index:
                self._versus = None
            self.classes_changed.emit()
            self._send_view()

    def pick_versus(self, index: int) -> None:
        """A prediction bar Ctrl-clicked: compare with that class (again: with none)."""
        self._versus = None if index in (self._versus, self._explained) else index
        self.classes_changed.emit()
        self._send_view()

    def set_explaining(self, on: bool) -> None:
        """The building blocks are shown (so the backend computes them) or not."""
        if on != self._explain:
            self._explain = on
            self._send_view()

    def ablated_state(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """The deleted units as the view sends them, layers and units sorted."""
        return tuple(
            (layer, tuple(sorted(units))) for layer, units in sorted(self._ablated.items())
            if units
        )

    def ablated_rows(self) -> list[tuple[str, int]]:
        """Every deleted unit as (layer, unit), sorted."""
        return [(layer, unit) for layer, units in self.ablated_state() for unit in units]

    def ablated_units(self, layer: str | None) -> tuple[int, ...]:
        """The deleted units of `layer`, in no particular order."""
        return tuple(self._ablated.get(layer or "", ()))

    def is_ablated(self, layer: str | None, unit: int) -> bool:
        return layer is not None and unit in self._ablated.get(layer, ())

    def channels(self) -> int:
        """Units of the selected layer (from the model, else from the grid on screen)."""
        for info in self._layers:
            if info.name == self._layer:
                return info.channels
        g = self.shown_geometry()
        return g.channels if g is not None else 0

    def shown_geometry(self) -> GridGeometry | None:
        """The activations' layout on screen, if it belongs to the selected layer."""
        if self._shown is None:
            return None
        layer, geometry = self._shown
        return geometry if self._layer is None or layer == self._layer else None

    # ------------------------------------------------------------------ selection

    def set_layers(
        self, layers: tuple[LayerInfo, ...], layer: str | None, unit: int | None = None
    ) -> None:
        """A new model: its layers, and the layer (and unit) to start on; None: no layer."""
        self._layers = tuple(layers)
        self._unit_names.clear()
        if unit is not None:
            self._unit = unit
        self._layer = None  # so selecting `layer` counts as a change and sends the view
        # units deleted from the old model mean nothing in the new one; ask for patches anew
        self._ablated.clear()
        self._requested = None
        self.layers_changed.emit()
        self.ablation_changed.emit()
        if layer is None or not self.select_layer(layer):
            self._send_view()

    def note_shown(self, layer: str, geometry: GridGeometry) -> None:
        """The activations of `layer` are on screen in `geometry` (arrows move through it)."""
        self._shown = (layer, geometry)

    def select(self, name: str, unit: int) -> bool:
        """Select a layer and a unit of it at once (a class unit from a prediction bar)."""
        info = next((i for i in self._layers if i.name == name), None)
        if info is None:
            return False
        unit = min(max(unit, 0), info.channels - 1)
        if (name, unit) != (self._layer, self._unit):
            self._layer, self._unit = name, unit
            self._send_view()
            self.selection_changed.emit()
        return True

    def set_class_names(self, names: tuple[str, ...]) -> None:
        self._class_names = tuple(names)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The model's class names (its `logits` units), () when it has none."""
        return self._class_names

    def set_unit_names(self, layer: str, names: tuple[str, ...]) -> None:
        """Names of a layer's units (a concept layer's concepts); () forgets them."""
        self._unit_names[layer] = tuple(names)

    def unit_name(self, layer: str | None, unit: int) -> str:
        """What a unit stands for, when it is known: a class unit's class name, a named
        concept's name."""
        if layer == LOGITS and 0 <= unit < len(self._class_names):
            return self._class_names[unit]
        names = self._unit_names.get(layer or "", ())
        return names[unit] if 0 <= unit < len(names) else ""

    def update_layers(self, layers: tuple[LayerInfo, ...]) -> None:
        """The same model's layers, grown (a concept layer learned): the selection and the
        deleted units stay."""
        self._layers = tuple(layers)
        self.layers_changed.emit()

    def select_layer(self, name: str) -> bool:
        """Select a layer by name; the unit is kept if the layer has it, else 0. False: unknown."""
        info = next((i for i in self._layers if i.name == name), None)
        if info is None:
            return False
        if name == self._layer:
            return True
        self._layer = name
        if not 0 <= self._unit < info.channels:
            self._unit = 0
        self._send_view()
        self.selection_changed.emit()
        return True

    def step_layer(self, delta: int) -> None:
        """PgUp / PgDn: the previous or next layer, stopping at the ends."""
        if not self._layers:
            return
        names = [info.name for info in self._layers]
        row = names.index(self._layer) if self._layer in names else -1
        self.select_layer(names[min(max(row + delta, 0), len(names) - 1)])

    def select_unit(self, unit: int) -> None:
        """Select `unit` of the current layer (clamped)."""
        channels = self.channels()
        if channels:
            unit = min(max(unit, 0), channels - 1)
        if unit == self._unit:
            return
        self._unit = unit
        self._send_view()
        self.selection_changed.emit()

    def move_unit(self, drow: int, dcol: int) -> None:
        """Arrow keys: ±1 unit, or one grid row, using the layout on screen."""
        geometry = self.shown_geometry()
        if geometry is not None:
            self.select_unit(geometry.neighbour(self._unit, drow, dcol))
        elif dcol:
            # no grid of this layer yet: a row has no meaning, a neighbour still does
            self.select_unit(self._unit + dcol)

    def request_unit_again(self) -> None:
        """Ask for the selected unit's patches and image again (a new cache has them)."""
        if self._layer is not None:
            self._request_unit()

    # ------------------------------------------------------------------ modes

    def set_frozen(self, frozen: bool) -> None:
        if frozen != self._frozen:
            self._frozen = frozen
            self._send_view()
            self.frozen_changed.emit(frozen)

    def set_normalization(self, normalization: Normalization) -> None:
        if normalization != self._normalization:
            self._normalization = normalization
            self._send_view()
            self.normalization_changed.emit(normalization)

    def set_grid_aspect(self, aspect: float) -> None:
        """The grid pane's width / height, so the backend lays tiles out to fill it."""
        self._grid_aspect = aspect
        if self._layer is not None:  # before a model is ready there is nothing to re-tile
            self._send_view()

    def set_attribution(self, mode: AttributionMode) -> None:
        """Attribute the selected unit to the input with `mode` (OFF: stop computing it)."""
        if mode != self._attribution:
            self._attribution = mode
            self._send_view()
            self.attribution_changed.emit(mode)

    def cycle_attribution(self) -> None:
        """`b`: off → gradient → deconvnet → guided → off."""
        i = ATTRIBUTION_CYCLE.index(self._attribution)
        self.set_attribution(ATTRIBUTION_CYCLE[(i + 1) % len(ATTRIBUTION_CYCLE)])

    def set_attribution_at(self, position: tuple[int, int] | None) -> None:
        """Attribute this (y, x) of the unit's map; None: its maximum."""
        if position != self._attribution_at:
            self._attribution_at = position
            self._send_view()
            self.attribution_at_changed.emit(position)

    def click_position(self, y: int, x: int) -> None:
        """A click on the unit's map: attribute there (turning attribution on); again: undo."""
        if self._attribution_at == (y, x):
            self.set_attribution_at(None)
            return
        if self._attribution == AttributionMode.OFF:
            self.set_attribution(AttributionMode.GRADIENT)
        self.set_attribution_at((y, x))

    # ------------------------------------------------------------------ ablation

    def toggle_ablation(self) -> bool | None:
        """`d`: delete the selected unit, or restore it. True: deleted; None: no layer."""
        if self._layer is None:
            return None
        units = self._ablated.setdefault(self._layer, set())
        deleted = self._unit not in units
        if deleted:
            units.add(self._unit)
        else:
            units.discard(self._unit)
        self._ablation_changed()
        return deleted

    def restore_units(self, units: list[tuple[str, int]]) -> None:
        for layer, unit in units:
            self._ablated.get(layer, set()).discard(unit)
        self._ablation_changed()

    def restore_all(self) -> bool:
        """Restore every deleted unit; False when none was deleted."""
        if not any(self._ablated.values()):
            return False
        self._ablated.clear()
        self._ablation_changed()
        return True

    def set_ablation_mode(self, mode: AblationMode) -> None:
        """What a deleted unit outputs: zero, or its running mean."""
        if mode != self._ablation_mode:
            self._ablation_mode = mode
            self._send_view()
            self.ablation_mode_changed.emit(mode)

    # ------------------------------------------------------------------ sending

    def _ablation_changed(self) -> None:
        self._ablated = {layer: units for layer, units in self._ablated.items() if units}
        self._send_view()
        self.ablation_changed.emit()

    def _send_view(self) -> None:
        selection = (self._layer, self._unit) if self._layer is not None else None
        changed = selection is not None and selection != self._requested
        if changed and self._attribution_at is not None:
            # a position in the old unit's map means nothing in the new one
            self._attribution_at = None
            self.attribution_at_changed.emit(None)
        self.view_changed.emit(self.view_state())
        if changed:
            self._request_unit()

    def _request_unit(self) -> None:
        assert self._layer is not None
        self._requested = (self._layer, self._unit)
        self.unit_requested.emit(self._layer, self._unit)
