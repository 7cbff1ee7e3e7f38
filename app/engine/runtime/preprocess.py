"""Frames (uint8 RGB, any size) → normalized model input, on the model's device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Preprocess:
    """Resize-and-center-crop as in the usual ImageNet evaluation, then normalize.

    `crop_fraction` = crop / resize (224/256 = 0.875): the model sees the central square
    whose side is `crop_fraction` × the frame's shorter side, scaled to `size`.
    """

    size: int = 224
    crop_fraction: float = 0.875
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the region of a height×width frame that the model sees."""
        side = max(1, round(min(height, width) * self.crop_fraction))
        return (width - side) // 2, (height - side) // 2, side, side


def frame_to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, H, W) uint8 on `device` (the copy is the only transfer)."""
    t = torch.from_numpy(np.ascontiguousarray(image))
    # uint8 is a quarter of the float bytes: convert after the copy. A plain copy: pinning
    # each new frame would cost more than the asynchronous copy saves.
    return t.to(device).permute(2, 0, 1)


def prepare_batch(images: list[torch.Tensor], pre: Preprocess) -> torch.Tensor:
    """(3, H, W) uint8 tensors → (N, 3, size, size) float32 normalized batch."""
    out = []
    for img in images:
        _, h, w = img.shape
        x, y, cw, ch = pre.crop_box(h, w)
        crop = img[:, y : y + ch, x : x + cw].unsqueeze(0).float()
        if (ch, cw) != (pre.size, pre.size):
            # antialias matters when a 1280-px frame shrinks to 224: without it, aliasing
            # shows up as flicker in the early layers' maps
            crop = F.interpolate(
                crop, size=(pre.size, pre.size), mode="bilinear", align_corners=False,
                antialias=True,
            )
        out.append(crop)
    batch = torch.cat(out).div_(255.0)
    mean = torch.tensor(pre.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=batch.device).view(1, 3, 1, 1)
    return batch.sub_(mean).div_(std)
