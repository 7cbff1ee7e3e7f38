"""Real photos for tests, written once per session as files the app reads like a user's."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ASSETS = Path(__file__).resolve().parent.parent / "assets"

# ImageNet indices (torchvision's category list): the classes a photo may honestly get
CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


def chelsea() -> np.ndarray:
    from skimage import data

    return data.chelsea()


def coffee() -> np.ndarray:
    from skimage import data

    return data.coffee()


def write_jpeg(path: Path, rgb: np.ndarray) -> Path:
    ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok, path
    return path
