"""Boxes between the model's input and the pixels it came from (a frame, an image file).

The model sees `crop` of a frame — (x, y, w, h), `Preprocess.crop_box` — resized to
`input_size`. A receptive-field box in model-input pixels maps back through that resize;
it is rounded outwards (a pixel touched at all belongs to the box), clipped to the frame and
kept at least one pixel wide, so a crop of it is never empty. Every box is (y0, x0, y1, x1),
half-open. The scan, the live top-k and the receptive-field code all map through here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_EPS = 1e-6  # float noise at an exact pixel edge must not widen a box by a pixel


def to_frame_boxes(boxes: np.ndarray, crop: Sequence[float], input_size: int,
                   frame_hw: Sequence[int]) -> np.ndarray:
    """(N, 4) model-input boxes → (N, 4) int64 boxes in the frame of `frame_hw`."""
    cx, cy, cw, ch = (float(v) for v in crop)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    sy, sx = ch / input_size, cw / input_size
    h, w = int(frame_hw[0]), int(frame_hw[1])
    y0 = np.clip(np.floor(cy + b[:, 0] * sy + _EPS), 0, h - 1)
    x0 = np.clip(np.floor(cx + b[:, 1] * sx + _EPS), 0, w - 1)
    y1 = np.minimum(np.maximum(np.ceil(cy + b[:, 2] * sy - _EPS), y0 + 1), h)
    x1 = np.minimum(np.maximum(np.ceil(cx + b[:, 3] * sx - _EPS), x0 + 1), w)
    return np.stack([y0, x0, y1, x1], 1).astype(np.int64)


def to_frame_box(box: Sequence[float], crop: Sequence[float], input_size: int,
                 frame_hw: Sequence[int]) -> tuple[int, int, int, int]:
    """One model-input box → (y0, x0, y1, x1) in the frame of `frame_hw`."""
    y0, x0, y1, x1 = (int(v) for v in to_frame_boxes(np.asarray([box]), crop, input_size,
                                                      frame_hw)[0])
    return y0, x0, y1, x1


def rescale_crop(crop: Sequence[float], frame_hw: Sequence[int],
                 image_hw: Sequence[int]) -> tuple[float, float, float, float]:
    """`crop` of a frame that is `image_hw` downscaled to `frame_hw`, in the image's pixels."""
    sy, sx = image_hw[0] / frame_hw[0], image_hw[1] / frame_hw[1]
    cx, cy, cw, ch = crop
    return cx * sx, cy * sy, cw * sx, ch * sy
