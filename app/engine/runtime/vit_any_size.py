"""torchvision's VisionTransformer at any square input size, for the views that need it.

torchvision's ViT asserts that its input is exactly `image_size` (224) and adds a fixed
(1, 1 + 14·14, C) position embedding. Preferred images are rendered at the size the user
picks, and that would fail. Like timm's `dynamic_img_size`, the position embedding of the
patch grid is resampled (bicubic) to the grid the input gives; at the native size nothing
changes, so predictions and every recorded layer are torchvision's own.

The adaptation is per instance (the loaded model's class is swapped for a subclass that adds
no state): torchvision's classes are never patched, and the module tree, parameter names and
state_dict stay torchvision's, so `ARCH:STATE_DICT` checkpoints load unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vision_transformer import Encoder, VisionTransformer


class AnySizeEncoder(Encoder):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        pos = self.pos_embedding
        if input.shape[1] != pos.shape[1]:
            pos = resample_position_embedding(pos, input.shape[1])
        return self.ln(self.layers(self.dropout(input + pos)))


class AnySizeViT(VisionTransformer):
    def _process_input(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        x = self.conv_proj(x)  # (n, hidden, h/p, w/p): the patch grid, whatever its size
        return x.reshape(n, self.hidden_dim, -1).permute(0, 2, 1)


def resample_position_embedding(pos: torch.Tensor, tokens: int) -> torch.Tensor:
    """(1, 1 + s·s, C) class + grid embedding → (1, tokens, C), the grid resized (bicubic)."""
    old = math.isqrt(pos.shape[1] - 1)
    new = math.isqrt(tokens - 1)
    if new * new != tokens - 1 or old * old != pos.shape[1] - 1:
        raise ValueError(f"a ViT needs a square input: {tokens - 1} patch tokens make no "
                         "square grid")
    cls, grid = pos[:, :1], pos[:, 1:]
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False,
                         antialias=new < old)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, new * new, -1)], 1)


def any_size(model: nn.Module) -> nn.Module:
    """`model` itself, a torchvision ViT now taking any square size (other models as they are)."""
    if type(model) is VisionTransformer and type(model.encoder) is Encoder:
        model.__class__ = AnySizeViT
        model.encoder.__class__ = AnySizeEncoder
    return model
