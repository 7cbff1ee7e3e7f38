"""Live top-k: the frames of this session that excited each unit of one layer the most.

Kept on the model's device, for the selected layer only. Per frame the cost is one
max over each map, one comparison with each unit's current k-th best and one tiny
device → host sync (`any`); only when some units take the frame is it uploaded and their
receptive-field patches cut out in one batched `roi_align`. Memory is fixed:
(C, k) numbers and (C, k, 3, S, S) uint8 thumbnails, never whole frames.

Usage from the inference worker (the GUI reads `top(unit)` results sent as messages):

    live = LiveTopK(k=9)
    live.update(acts, frame_id, frame_rgb, crop_box, rf)  # acts: (C, H, W) on the device
    entries = live.top(unit)  # best first, each with its (S, S, 3) uint8 thumbnail
    live.reset()  # on a layer change (a change of map shape also resets by itself)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import roi_align

from app.core.boxes import to_frame_boxes
from app.engine.runtime.receptive_field import ReceptiveField


@dataclass(frozen=True, eq=False)
class LiveEntry:
    """One of a unit's best frames this session."""

    rank: int
    frame_id: int
    value: float
    y: int  # location of the maximum in the feature map
    x: int
    box: tuple[int, int, int, int]  # (y0, x0, y1, x1), half-open, in the frame's pixels
    thumbnail: np.ndarray  # (S, S, 3) uint8: the receptive-field patch, stretched to S×S


class LiveTopK:
    """Per-unit top-k (value desc, then earlier frame first) of frames seen, on the device."""

    def __init__(self, k: int = 9, thumb_size: int = 48) -> None:
        if k <= 0 or thumb_size <= 0:
            raise ValueError("k and thumb_size must be positive")
        self.k, self.thumb_size = k, thumb_size
        self.shape: tuple[int, ...] | None = None
        self.frames_seen = 0

    def reset(self) -> None:
        """Forget everything (the selected layer changed)."""
        self.shape = None
        self.frames_seen = 0

    def _allocate(self, shape: tuple[int, ...], device: torch.device) -> None:
        c = shape[0]
        k, s = self.k, self.thumb_size
        self.shape = shape
        self.values = torch.full((c, k), -math.inf, device=device)
        self.ids = torch.full((c, k), -1, dtype=torch.int64, device=device)
        self.locs = torch.zeros((c, k), dtype=torch.int64, device=device)
        self.boxes = torch.zeros((c, k, 4), dtype=torch.int64, device=device)
        self.thumbs = torch.zeros((c, k, 3, s, s), dtype=torch.uint8, device=device)

    @torch.no_grad()
    def update(self, acts: torch.Tensor, frame_id: int, frame_rgb: np.ndarray,
               crop_box: tuple[int, int, int, int], rf: ReceptiveField) -> int:
        """Offer one frame: `acts` (C, H, W) of the layer, the (H, W, 3) uint8 frame it came
        from, `Preprocess.crop_box` of it and the layer's receptive field. Frame ids must
        grow. Returns how many units took the frame."""
        shape = tuple(acts.shape)
        if shape != self.shape:
            self._allocate(shape, acts.device)
        self.frames_seen += 1
        c, _, w = shape
        flat = acts.detach().reshape(c, -1)
        loc = flat.argmax(1)
        val = flat.gather(1, loc[:, None]).squeeze(1).float().nan_to_num(nan=-math.inf)
        worst = self.values.min(1).values
        enter = val > worst  # ties keep the earlier frame
        units = enter.nonzero().squeeze(1)
        if units.numel() == 0:  # the common case once the session has run a while
            return 0
        # the slot to give up: the worst value, and among equal ones the latest frame
        is_worst = self.values[units] == worst[units, None]
        slot = torch.where(is_worst, self.ids[units], -2).argmax(1)
        y, x = loc[units] // w, loc[units] % w
        # a few boxes, for the units that took the frame: mapped on the host
        yc, xc = y.cpu().numpy(), x.cpu().numpy()
        model_boxes = np.stack([rf.rows[yc, 0], rf.cols[xc, 0], rf.rows[yc, 1],
                                rf.cols[xc, 1]], 1)
        box = torch.from_numpy(to_frame_boxes(model_boxes, crop_box, rf.input_size,
                                              frame_rgb.shape[:2])).to(acts.device)
        frame = torch.from_numpy(np.ascontiguousarray(frame_rgb)).to(acts.device)
        frame = frame.permute(2, 0, 1)[None].float()
        # units whose boxes coincide share one crop: after a transformer's attention every
        # token's field is the whole image, and 768 units would crop the same box 768 times
        unique, which = torch.unique(box, dim=0, return_inverse=True)
        rois = torch.cat([torch.zeros(len(unique), 1, device=acts.device),
                          unique[:, [1, 0, 3, 2]].float()], 1)  # (0, x0, y0, x1, y1)
        s = self.thumb_size
        patches = roi_align(frame, rois, (s, s), spatial_scale=1.0, sampling_ratio=2,
                            aligned=True)[which]
        self.values[units, slot] = val[units]
        self.ids[units, slot] = frame_id
        self.locs[units, slot] = loc[units]
        self.boxes[units, slot] = box
        self.thumbs[units, slot] = patches.round().clamp(0, 255).to(torch.uint8)
        return int(units.numel())

    def top(self, unit: int) -> list[LiveEntry]:
        """The unit's best frames so far, best first (one small copy to the host)."""
        if self.shape is None:
            return []
        ids = self.ids[unit].cpu().numpy()
        vals = self.values[unit].cpu().numpy()
        order = [i for i in np.lexsort((ids, -vals.astype(np.float64))) if ids[i] >= 0]
        if not order:
            return []
        w = self.shape[2]
        locs = self.locs[unit].cpu().numpy()
        boxes = self.boxes[unit].cpu().numpy()
        thumbs = self.thumbs[unit, order].permute(0, 2, 3, 1).cpu().numpy()
        return [LiveEntry(rank, int(ids[i]), float(vals[i]), int(locs[i] // w),
                          int(locs[i] % w), _box(boxes[i]), thumbs[rank])
                for rank, i in enumerate(order)]


def _box(values: np.ndarray) -> tuple[int, int, int, int]:
    y0, x0, y1, x1 = (int(v) for v in values)
    return y0, x0, y1, x1
