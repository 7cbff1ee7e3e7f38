"""The input pane: the frame, the crop the model saw, and the selected unit's map over it.

With attribution on, the saliency map replaces the unit's map over the crop box.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QPen
from PyQt6.QtWidgets import QGraphicsRectItem, QWidget

from app.gui import theme
from app.gui.colormaps import saliency_table
from app.gui.image_pane import ImageView, Panel, make_image_item


class InputView(Panel):
    """Frame (RGB uint8) with the crop box outlined and a heat-map overlay stretched over it."""

    # the mouse over the crop the model saw: (x, y) as fractions of it; (-1, -1) off it
    crop_hovered = pyqtSignal(float, float)

    def __init__(self, opacity: float, parent: QWidget | None = None) -> None:
        super().__init__("Input", parent)
        self.pane = ImageView("Waiting for frames…")
        self.frame_item = make_image_item()
        self.overlay_item = make_image_item()
        self.overlay_item.setOpacity(opacity)
        self.overlay_item.setZValue(5)
        self.attribution_item = make_image_item()
        self.attribution_item.setOpacity(min(1.0, opacity + 0.35))  # sparse: needs more ink
        self.attribution_item.setZValue(6)
        self.attribution_item.setLookupTable(saliency_table("inferno"))
        self.attribution_item.hide()
        # a unit's concept mask (dissection): tinted where its live map beats its threshold
        self.mask_item = make_image_item()
        self.mask_item.setZValue(7)
        mask_lut = np.zeros((2, 4), np.uint8)
        mask_lut[1] = (64, 224, 208, 120)  # turquoise, half transparent: the photo shows
        self.mask_item.setLookupTable(mask_lut)
        self.mask_item.hide()
        # the building blocks' overlay (spatial attribution or neuron groups), RGBA
        self.explanation_item = make_image_item()
        self.explanation_item.setZValue(8)
        self.explanation_item.hide()
        # a transformer's attention from one token: magenta, as opaque as it is strong
        self.attention_item = make_image_item()
        self.attention_item.setZValue(9)
        self.attention_item.hide()
        self.crop_item = QGraphicsRectItem()
        pen = QPen(QColor(theme.ACCENT))
        pen.setWidthF(1.5)
        pen.setCosmetic(True)
        pen.setStyle(Qt.PenStyle.DashLine)
        self.crop_item.setPen(pen)
        self.crop_item.setZValue(10)
        self.pane.view.addItem(self.frame_item)
        self.pane.view.addItem(self.overlay_item)
        self.pane.view.addItem(self.attribution_item)
        self.pane.view.addItem(self.mask_item)
        self.pane.view.addItem(self.explanation_item)
        self.pane.view.addItem(self.attention_item)
        self._crop: tuple[int, int, int, int] | None = None
        self.pane.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.pane.view.addItem(self.crop_item)
        self.layout_.addWidget(self.pane, 1)
        self._frame_shape: tuple[int, ...] | None = None
        self._overlay_key: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        self._attribution_key: tuple[tuple[int, ...], tuple[int, ...]] | None = None
        self.overlay_enabled = True
        self.showing_attribution = False
        self.showing_explanation = False  # the building blocks' overlay replaces the unit's

    def set_lut(self, lut: np.ndarray) -> None:
        self.overlay_item.setLookupTable(lut)

    def set_overlay_enabled(self, enabled: bool) -> None:
        self.overlay_enabled = enabled
        self.overlay_item.setVisible(
            enabled and not self.showing_attribution and self.overlay_item.image is not None
        )
        self.attribution_item.setVisible(enabled and self.showing_attribution)

    def set_frame(self, image: np.ndarray, crop: tuple[int, int, int, int]) -> None:
        """Show an (H, W, 3) uint8 frame; `crop` is (x, y, w, h) in frame pixels."""
        self.frame_item.setImage(image, autoLevels=False, levels=(0, 255))
        if not self.pane.showing_graphics:
            self.pane.show_graphics()  # before any autoRange: a hidden view has no size
        if image.shape != self._frame_shape:
            self._frame_shape = image.shape
            self.pane.view.autoRange(padding=0.01)
        x, y, w, h = crop
        self.crop_item.setRect(QRectF(x, y, w, h))
        self._crop = crop

    def set_overlay(self, heat: np.ndarray, crop: tuple[int, int, int, int]) -> None:
        """Stretch a (h, w) uint8 heat map over the crop box."""
        self.overlay_item.setImage(heat, autoLevels=False, levels=(0, 255))
        key = (heat.shape, tuple(crop))
        # setRect scales by the image's size, so redo it only when size or crop changed
        if key != self._overlay_key:
            self._overlay_key = key
            self.overlay_item.setRect(QRectF(*crop))
        self.overlay_item.setVisible(self.overlay_enabled and not self.showing_attribution
                                     and not self.showing_explanation)

    def set_attribution(
        self, saliency: np.ndarray | None, crop: tuple[int, int, int, int]
    ) -> None:
        """Stretch an (h, w) uint8 saliency map over the crop box in place of the unit's map;
        None goes back to the unit's map."""
        if saliency is None:
            if self.showing_attribution:
                self.showing_attribution = False
                self.attribution_item.hide()
                self.overlay_item.setVisible(
                    self.overlay_enabled and self.overlay_item.image is not None
                )
            return
        self.attribution_item.setImage(saliency, autoLevels=False, levels=(0, 255))
        key = (saliency.shape, tuple(crop))
        if key != self._attribution_key:
            self._attribution_key = key
            self.attribution_item.setRect(QRectF(*crop))
        if not self.showing_attribution:
            self.showing_attribution = True
            self.overlay_item.hide()
            self.attribution_item.setVisible(self.overlay_enabled)

    def set_explanation_overlay(self, rgba: np.ndarray | None,
                                crop: tuple[int, int, int, int]) -> None:
        """Stretch an (s, s, 4) uint8 RGBA picture over the crop box; None hides it."""
        if rgba is None:
            if self.showing_explanation:
                self.showing_explanation = False
                self.explanation_item.hide()
                self.overlay_item.setVisible(self.overlay_enabled and not self.showing_attribution
                                             and self.overlay_item.image is not None)
            return
        self.explanation_item.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.explanation_item.setRect(QRectF(*crop))
        self.explanation_item.show()
        self.showing_explanation = True
        self.overlay_item.hide()

    def set_attention(self, weights: np.ndarray | None,
                      crop: tuple[int, int, int, int]) -> None:
        """Tint the crop by an (h, w) attention map, from its least to its most attended token
        (attention spread evenly shows as nothing); None hides it."""
        if weights is None:
            self.attention_item.hide()
            return
        low = float(weights.min())
        span = max(float(weights.max()) - low, 1e-12)
        rgba = np.zeros((*weights.shape, 4), np.uint8)
        rgba[..., :3] = (255, 64, 200)
        rgba[..., 3] = np.clip((weights - low) / span * 220, 0, 220).astype(np.uint8)
        self.attention_item.setImage(rgba, autoLevels=False, levels=(0, 255))
        self.attention_item.setRect(QRectF(*crop))
        self.attention_item.show()

    def set_attention_text(self, text: str) -> None:
        """What the attention tint is (its block and query), as the pane's tooltip."""
        self.pane.setToolTip(text)

    def attention_overlay(self) -> np.ndarray | None:
        image: np.ndarray | None = self.attention_item.image
        return image if self.attention_item.isVisible() else None

    def explanation_overlay(self) -> np.ndarray | None:
        image: np.ndarray | None = self.explanation_item.image
        return image if self.explanation_item.isVisible() else None

    def crop_fraction_at(self, scene_pos: QPointF) -> tuple[float, float] | None:
        """(x, y) of a scene position as fractions of the crop; None outside it."""
        if self._crop is None or self.frame_item.image is None:
            return None
        p = self.frame_item.mapFromScene(scene_pos)
        x, y, w, h = self._crop
        fx, fy = (p.x() - x) / max(w, 1), (p.y() - y) / max(h, 1)
        return (fx, fy) if 0 <= fx < 1 and 0 <= fy < 1 else None

    def scene_pos_in_crop(self, fx: float, fy: float) -> QPointF:
        """The scene position at fractions (fx, fy) of the crop (tests hover there)."""
        assert self._crop is not None
        x, y, w, h = self._crop
        return self.frame_item.mapToScene(QPointF(x + fx * w, y + fy * h))

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        at = self.crop_fraction_at(scene_pos)
        self.crop_hovered.emit(*(at if at is not None else (-1.0, -1.0)))

    def set_mask(self, mask: np.ndarray | None, crop: tuple[int, int, int, int]) -> None:
        """Tint a (side, side) 0/1 mask over the crop box; None hides it."""
        if mask is None:
            self.mask_item.hide()
            return
        self.mask_item.setImage(mask, autoLevels=False, levels=(0, 1))
        self.mask_item.setRect(QRectF(*crop))
        self.mask_item.show()

    def mask_image(self) -> np.ndarray | None:
        """The concept mask on screen, None while none is shown."""
        image: np.ndarray | None = self.mask_item.image
        return image if self.mask_item.isVisible() else None

    def set_opacity(self, opacity: float) -> None:
        self.overlay_item.setOpacity(opacity)

    def set_source_label(self, label: str) -> None:
        self.set_title(f"Input · {label}")

    def placeholder_text(self) -> str:
        """What the pane says until the first frame arrives."""
        return self.pane.placeholder_text()

    def set_placeholder(self, text: str) -> None:
        """What it says while it has no frame (why none comes, when none will)."""
        self.pane.set_placeholder(text)

    def chrome_height(self) -> int:
        """Height of everything but the frame: the title row and the margins."""
        return self.title_height() + 18

    def frame_image(self) -> np.ndarray | None:
        image: np.ndarray | None = self.frame_item.image
        return image

    def overlay_image(self) -> np.ndarray | None:
        """The unit's map as last handed over (shown or not)."""
        image: np.ndarray | None = self.overlay_item.image
        return image

    def overlay_visible(self) -> bool:
        return self.overlay_item.isVisible()

    def overlay_rect(self) -> tuple[float, float, float, float]:
        """(x, y, w, h) the unit's map covers, in frame pixels."""
        return _rect_in_frame(self.overlay_item)

    def attribution_image(self) -> np.ndarray | None:
        image: np.ndarray | None = self.attribution_item.image
        return image

    def attribution_visible(self) -> bool:
        return self.attribution_item.isVisible()

    def attribution_rect(self) -> tuple[float, float, float, float]:
        """(x, y, w, h) the saliency map covers, in frame pixels."""
        return _rect_in_frame(self.attribution_item)


def _rect_in_frame(item: pg.ImageItem) -> tuple[float, float, float, float]:
    r = item.mapRectToParent(item.boundingRect())
    return (r.x(), r.y(), r.width(), r.height())
