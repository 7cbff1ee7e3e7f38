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


FOUR_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def write_photo_folder(folder: Path, suffix: str = ".png",
                       names: tuple[str, ...] = FOUR_PHOTOS) -> Path:
    """scikit-image's photos `names` as files `NAME{suffix}` in `folder`."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        img = getattr(data, name)()
        rgb = np.dstack([img] * 3) if img.ndim == 2 else img
        assert cv2.imwrite(str(folder / f"{name}{suffix}"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder
