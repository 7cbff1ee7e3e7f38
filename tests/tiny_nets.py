"""Tiny CNNs with hand-set weights, so expected activations can be computed by hand."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """conv(1→2, 2×2) → in-place ReLU → shared conv (used twice) with an in-place residual."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=2, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.shared = nn.Conv2d(2, 2, kernel_size=1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 3)
        with torch.no_grad():
            # channel 0 sums the 2×2 window, channel 1 is its negation, minus 1
            self.conv.weight.copy_(torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]],
                                                 [[[-1.0, -1.0], [-1.0, -1.0]]]]))
            self.conv.bias.copy_(torch.tensor([0.0, -1.0]))
            # swaps the two channels
            self.shared.weight.copy_(torch.tensor([[[[0.0]], [[1.0]]], [[[1.0]], [[0.0]]]]))
            self.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.conv(x))
        z = self.shared(y)
        z += y  # in place: overwrites the first `shared` output unless it was copied
        z = self.shared(z)  # the same module a second time
        return self.fc(self.pool(z).flatten(1))


def tiny_input() -> torch.Tensor:
    """A 1×1×3×3 image whose 2×2 window sums are 1+2+4+5=12, 16, 24, 28 (no negatives)."""
    return torch.arange(1.0, 10.0).view(1, 1, 3, 3)


class SharedAct(nn.Module):
    """One ReLU applied to a feature map, a vector, then a map again: the recorder names the
    maps `act` and `act:1` and does not count the vector."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.c1(x))
        gate = self.act(y.mean((2, 3))) + 1.0
        return self.act(self.c2(y) * gate[:, :, None, None])
