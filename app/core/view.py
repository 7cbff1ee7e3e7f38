"""What the user is looking at: the basics, and one small frozen part per live stage.

The GUI sends a new `ViewState` on every change. The basics (layer, unit, normalization,
frozen, the grid's aspect) are what every frame needs; each live stage of the worker
(`app/engine/live/stages`) reads its own part, `view.part(AttentionView)`, which is the
part's default while the view carries none. A new live feature adds a part class here and
touches nothing else in the view. Parts equal to their default are dropped and the rest kept
in a fixed order, so two views that ask for the same thing compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

from app.core.messages import AblationMode, AttributionMode, Normalization

P = TypeVar("P")


@dataclass(frozen=True)
class ViewState:
    """The basics of what is shown, and the stages' parts (frozen dataclasses with defaults)."""

    layer: str | None = None  # dotted module name; None: the model's default layer
    unit: int = 0
    normalization: Normalization = Normalization.PER_CHANNEL
    frozen: bool = False
    grid_aspect: float = 1.0  # width / height of the grid pane, so the mosaic fills it
    parts: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        kinds = [type(p) for p in self.parts]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"a view holds one part of each kind: {kinds}")
        kept = sorted((p for p in self.parts if p != type(p)()), key=lambda p: type(p).__name__)
        object.__setattr__(self, "parts", tuple(kept))

    def part(self, kind: type[P]) -> P:
        """This view's part of `kind`, or the part's default (the stage is off)."""
        for p in self.parts:
            if type(p) is kind:
                found: P = p
                return found
        return kind()

    def with_part(self, part: object) -> ViewState:
        """This view with `part` in place of its part of the same kind."""
        kept = (p for p in self.parts if type(p) is not type(part))
        return replace(self, parts=(*kept, part))


@dataclass(frozen=True)
class AttributionView:
    """Which backward rule maps the selected unit to input pixels (`b` cycles them), from
    which position (y, x) of the unit's map (None: its maximum)."""

    mode: AttributionMode = AttributionMode.OFF
    at: tuple[int, int] | None = None


@dataclass(frozen=True)
class DeletionView:
    """Deleted units, ((layer, (unit, ...)), ...): predictions then come from the ablated
    net, and the intact one's are shown beside them."""

    ablated: tuple[tuple[str, tuple[int, ...]], ...] = ()
    mode: AblationMode = AblationMode.ZERO


@dataclass(frozen=True)
class BlocksView:
    """"Why this prediction": the building blocks, on or off; the class explained (None:
    the top-1) and the one it is compared with (None: the class alone)."""

    on: bool = False
    target: int | None = None
    versus: int | None = None


@dataclass(frozen=True)
class AttentionView:
    """A transformer's attention over the input: from the token at `query` (y, x) of its
    grid, or the class token (None); rolled out through the blocks, or one block's."""

    on: bool = False
    query: tuple[int, int] | None = None
    rollout: bool = False


@dataclass(frozen=True)
class ColourView:
    """Colour or shape? The frame fed to the network in grayscale (its luminance in all three
    channels), so every view shows which units lose their response without colour."""

    grayscale: bool = False


@dataclass(frozen=True)
class AtlasView:
    """Where this frame falls on an activation atlas: `layer`'s positions placed on the
    cells of the direction set stored in `folder` (the atlas's `LAYER@atlasN`); off while
    `folder` is ""."""

    layer: str = ""
    folder: str = ""
