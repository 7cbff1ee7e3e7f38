"""Colour or shape? (deep-visualization-toolbox #55): the frame fed in grayscale.

With `ColourView.grayscale` on, the network sees each frame's luminance (ITU-R BT.601, as
OpenCV's RGB→gray) in all three channels, so the grid, the predictions and every other view
show which units lose their response without colour. The frame shown on the input pane stays
the camera's: the user sees what was converted, the status bar says it is.
"""

from __future__ import annotations

import numpy as np

from app.core.view import ColourView, ViewState
from app.engine.live.stages.base import BaseStage, StageContext

# BT.601 luma weights, the ones OpenCV's COLOR_RGB2GRAY uses
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def grayscale(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → the same shape, each pixel its luminance in all channels."""
    luma = np.rint(image.astype(np.float32) @ LUMA).clip(0, 255).astype(np.uint8)
    return np.repeat(luma[..., None], 3, axis=2)


class ColourStage(BaseStage):
    """Converts the frame to grayscale before the network sees it, while asked."""

    def __init__(self, context: StageContext) -> None:
        del context  # nothing of the model is needed

    def prepare(self, image: np.ndarray, view: ViewState) -> np.ndarray:
        return grayscale(image) if view.part(ColourView).grayscale else image
