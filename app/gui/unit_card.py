"""The unit card: everything about the selected unit at once, as the old toolbox showed it.

Top row: the enlarged live map, the live attribution, and four preferred images optimized
together with a diversity term (what differs between them, the unit does not care about).
Below: the top-9 dataset patches, each with its attribution beside it (the toolbox's
"deconv of the top 9"). A line of facts says what the caches know: the unit's class
selectivity and its concept label. It sits as a tab of the centre column (the largest area
on a 1366×768 screen), so nothing has to be scrolled or hidden.

The card is fed like the panes: events (patches, preferred images, attributions, facts)
whatever tab is shown, the per-frame map and attribution only while it is visible.
"""

from __future__ import annotations

import numpy as np
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from app.core.messages import (
    ColourDependence,
    Patch,
    PatchAttributions,
    PreferredVariant,
    UnitFacts,
    UnitPatches,
)
from app.gui.attribution_view import ATTRIBUTION_COLORMAP
from app.gui.colormaps import lookup_table
from app.gui.image_pane import ElidedLabel, ImageView, make_image_item
from app.gui.patches_view import GRID_SIDE, PatchTile, PictureTile, folder_name

MONTAGE_SIDE = 2  # 2×2 preferred images pushed apart: the invariances show between them
PATCH_RULE_TEXT = {"guided": "guided backprop", "deconvnet": "deconvnet",
                   "gradient": "gradient"}


class _Box(QWidget):
    """A small heading over one part of the card."""

    def __init__(self, title: str, content: QWidget | None = None) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.heading = ElidedLabel(title)
        self.heading.setObjectName("paneInfo")
        layout.addWidget(self.heading)
        self.body = QVBoxLayout()
        self.body.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(self.body, 1)
        if content is not None:
            self.body.addWidget(content, 1)


class UnitCard(QWidget):
    """The selected unit at a glance; `patch_clicked` opens a patch like the patches tab."""

    patch_clicked = pyqtSignal(object)  # Patch

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layer = ""
        self.unit = -1
        outer = QVBoxLayout(self)
        outer.setContentsMargins(6, 6, 6, 4)
        outer.setSpacing(6)
        self.title = QLabel("No unit selected")
        self.title.setObjectName("paneTitle")
        self.facts = QLabel(" ")
        self.facts.setObjectName("paneInfo")
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(self.title)
        outer.addWidget(self.facts)

        top = QHBoxLayout()
        top.setSpacing(8)
        self.map_view = ImageView("Waiting for frames…")
        self.map_image = make_image_item()
        self.map_view.view.addItem(self.map_image)
        self.attribution_view = ImageView("Attribution starts when the card is shown…")
        self.attribution_image = make_image_item()
        self.attribution_image.setLookupTable(lookup_table(ATTRIBUTION_COLORMAP))
        self.attribution_view.view.addItem(self.attribution_image)
        montage = QWidget()
        grid = QGridLayout(montage)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(3)
        self.preferred_tiles = [PictureTile() for _ in range(MONTAGE_SIDE * MONTAGE_SIDE)]
        for i, tile in enumerate(self.preferred_tiles):
            tile.setMinimumSize(40, 56)
            grid.addWidget(tile, *divmod(i, MONTAGE_SIDE))
        self.map_box = _Box("Live map", self.map_view)
        self.attribution_box = _Box("Live attribution", self.attribution_view)
        self.preferred_box = _Box("Preferred, made to differ", montage)
        self.preferred_box.setToolTip(
            "Four preferred images optimized together, a diversity term pushing them apart: "
            "what they share is what the unit needs, what differs is what it ignores")
        for box in (self.map_box, self.attribution_box, self.preferred_box):
            top.addWidget(box, 1)
        outer.addLayout(top, 5)

        patches = QWidget()
        pairs = QGridLayout(patches)
        pairs.setContentsMargins(0, 0, 0, 0)
        pairs.setHorizontalSpacing(3)
        pairs.setVerticalSpacing(3)
        self.patch_tiles: list[PatchTile] = []
        self.patch_attribution_tiles: list[PictureTile] = []
        for i in range(GRID_SIDE * GRID_SIDE):
            row, col = divmod(i, GRID_SIDE)
            tile, attribution = PatchTile(), PictureTile()
            for t in (tile, attribution):
                t.setMinimumSize(40, 56)
            tile.clicked.connect(self.patch_clicked)
            # a patch and its attribution side by side, a wider gap between pairs
            pairs.addWidget(tile, row, 3 * col)
            pairs.addWidget(attribution, row, 3 * col + 1)
            self.patch_tiles.append(tile)
            self.patch_attribution_tiles.append(attribution)
        for col in range(GRID_SIDE - 1):
            pairs.setColumnMinimumWidth(3 * col + 2, 6)
        self.patches_box = _Box("Top 9 dataset patches, each with its attribution", patches)
        self._patches_from = ""  # " from FOLDER": which scanned folder the patches are of
        self.patches_note = QLabel("")
        self.patches_note.setObjectName("placeholder")
        self.patches_note.setWordWrap(True)
        self.patches_note.hide()
        self.patches_box.body.addWidget(self.patches_note)
        outer.addWidget(self.patches_box, 6)
        self.mask_note = ""
        self._facts, self._colour = " ", ""
        self._map_shape: tuple[int, ...] | None = None
        self._attribution_shape: tuple[int, ...] | None = None

    # -- the selection --------------------------------------------------------------------

    def set_unit(self, layer: str, unit: int, name: str = "") -> None:
        """A new unit: clear what belonged to the previous one (`name`: its class)."""
        if (layer, unit) == (self.layer, self.unit):
            return
        self.layer, self.unit = layer, unit
        self.title.setText(f"{layer} · unit {unit}" + (f" · {name}" if name else ""))
        self.facts.setText("…")
        self._facts, self._colour = "…", ""
        for tile in self.preferred_tiles:
            tile.set_picture(None)
        self._set_patches(())
        self._patches_from = ""
        self.patches_note.hide()

    def _is_current(self, layer: str, unit: int) -> bool:
        return (layer, unit) == (self.layer, self.unit)

    # -- per frame ------------------------------------------------------------------------

    def set_lut(self, lut: np.ndarray) -> None:
        self.map_image.setLookupTable(lut)

    def set_map(self, heat: np.ndarray, caption: str = "") -> None:
        """The (h, w) uint8 live map, nearest-neighbour, re-fit when its size changes."""
        self.map_image.setImage(heat, autoLevels=False, levels=(0, 255))
        if not self.map_view.showing_graphics:
            self.map_view.show_graphics()
        if heat.shape != self._map_shape:
            self._map_shape = heat.shape
            self.map_view.view.autoRange(padding=0.02)
        if caption:
            extra = f" · {self.mask_note}" if self.mask_note else ""
            self.map_box.heading.setText(caption + extra)

    def set_mask_note(self, text: str, tooltip: str = "") -> None:
        """What the concept mask on the input covers (or "" for a unit with no concept)."""
        self.mask_note = text
        self.map_box.heading.setToolTip(tooltip)

    def set_attribution(self, saliency: np.ndarray | None, note: str) -> None:
        """The live (h, w) uint8 saliency, or `note` saying why there is none."""
        self.attribution_box.heading.setText(note if saliency is not None else
                                             "Live attribution")
        if saliency is None:
            self.attribution_view.set_placeholder(note)
            self.attribution_view.show_graphics(False)
            return
        self.attribution_image.setImage(saliency, autoLevels=False, levels=(0, 255))
        if not self.attribution_view.showing_graphics:
            self.attribution_view.show_graphics()
        if saliency.shape != self._attribution_shape:
            self._attribution_shape = saliency.shape
            self.attribution_view.view.autoRange(padding=0.02)

    # -- events ---------------------------------------------------------------------------

    def on_patches(self, event: UnitPatches) -> None:
        if not self._is_current(event.layer, event.unit):
            return
        self._set_patches(event.patches)
        self.patches_note.setText(event.note)
        self.patches_note.setVisible(not event.patches and bool(event.note))
        n = len(event.patches)
        self._patches_from = (f" from {folder_name(event.dataset)}"
                              if n and event.dataset else "")
        self.patches_box.heading.setText(
            f"Top {n} dataset patches{self._patches_from}, each with its attribution" if n else
            "Top dataset patches")

    def _set_patches(self, patches: tuple[Patch, ...]) -> None:
        for i, (tile, attribution) in enumerate(
                zip(self.patch_tiles, self.patch_attribution_tiles, strict=True)):
            tile.set_patch(patches[i] if i < len(patches) else None)
            attribution.set_picture(None)

    def on_patch_attributions(self, event: PatchAttributions) -> None:
        if not self._is_current(event.layer, event.unit):
            return
        rule = PATCH_RULE_TEXT.get(event.rule, event.rule)
        n = sum(t.patch is not None for t in self.patch_tiles)
        self.patches_box.heading.setText(
            f"Top {n} dataset patches{self._patches_from}, each with its {rule}")
        for i, tile in enumerate(self.patch_attribution_tiles):
            image = event.images[i] if i < len(event.images) else None
            # the caption row stays empty: the heading names the rule once for all nine
            tile.set_picture(image, "",
                             f"{rule} of unit {self.unit} at its maximum in patch {i + 1}")

    def on_preferred(self, event: PreferredVariant) -> None:
        if not self._is_current(event.layer, event.unit):
            return
        index = event.index
        if not 0 <= index < len(self.preferred_tiles):
            return
        state = "" if event.done else " …"
        self.preferred_tiles[index].set_picture(
            event.image, f"#{index + 1} · {event.activation:.2f}{state}",
            f"preferred image {index + 1} of {len(self.preferred_tiles)} (seed {event.seed}, "
            f"with a diversity term): activation {event.activation:.3f}"
            + ("" if event.done else " (rendering)"))

    def on_facts(self, event: UnitFacts) -> None:
        if not self._is_current(event.layer, event.unit):
            return
        selectivity = (f"Class selectivity {event.selectivity}" if event.selectivity
                       else event.selectivity_hint)
        concept = (f"Concept: {event.concept}" if event.concept else event.concept_hint)
        self._facts = f"{selectivity}  ·  {concept}"
        self.facts.setText(self._facts + self._colour)

    def on_colour_dependence(self, event: ColourDependence) -> None:
        """Colour or shape: the unit's top activation in grayscale over in colour."""
        if not self._is_current(event.layer, event.unit):
            return
        self._colour = (f"  ·  Colour dependence {event.ratio:.2f} (gray / colour over its "
                        f"top {event.images} images)")
        self.facts.setText(self._facts + self._colour)

    # -- what tests and the report read ---------------------------------------------------

    def facts_text(self) -> str:
        return self.facts.text()

    def shown_patches(self) -> list[np.ndarray]:
        return [t.patch.image for t in self.patch_tiles if t.patch is not None]

    def shown_patch_attributions(self) -> list[np.ndarray]:
        return [p for t in self.patch_attribution_tiles if (p := t.picture()) is not None]

    def shown_preferred(self) -> list[np.ndarray | None]:
        return [t.picture() for t in self.preferred_tiles]

    def preferred_captions(self) -> list[str]:
        return [t.caption() for t in self.preferred_tiles]

    def shown_map(self) -> np.ndarray | None:
        image: np.ndarray | None = self.map_image.image
        return image if self.map_view.showing_graphics else None

    def shown_attribution(self) -> np.ndarray | None:
        image: np.ndarray | None = self.attribution_image.image
        return image if self.attribution_view.showing_graphics else None

    def attribution_note(self) -> str:
        return ("" if self.attribution_view.showing_graphics
                else self.attribution_view.placeholder_text())
