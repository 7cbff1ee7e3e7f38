"""Receptive fields: exact on conv/pool stacks, right on ResNet, GoogLeNet, EfficientNet."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.core.boxes import to_frame_box
from app.engine.runtime.receptive_field import (
    measure_receptive_field,
    receptive_field,
)


def chain_interval(i: int, geometry: list[tuple[int, int, int, int]], size: int,
                   sizes: list[int]) -> tuple[int, int]:
    """Hand arithmetic: input interval of output index i through (kernel, stride, pad,
    dilation) layers with no holes; cells that fall in a layer's padding are dropped."""
    lo, hi = i, i + 1
    for (k, s, p, d), n_in in zip(reversed(geometry), reversed(sizes), strict=True):
        lo, hi = lo * s - p, (hi - 1) * s - p + d * (k - 1) + 1
        lo, hi = max(lo, 0), min(hi, n_in)  # padding cells are not pixels
    return lo, hi


def out_size(n: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    span = d * (k - 1) + 1
    q = (n + 2 * p - span) / s + 1
    m = math.ceil(q) if ceil else math.floor(q)
    if ceil and (m - 1) * s >= n + p:
        m -= 1
    return int(m)


STACKS = [
    # (kind, kernel, stride, pad, dilation, ceil_mode)
    [("conv", 3, 1, 1, 1, False), ("conv", 3, 2, 1, 1, False), ("max", 2, 2, 0, 1, False)],
    [("conv", 7, 2, 3, 1, False), ("max", 3, 2, 1, 1, False), ("conv", 3, 1, 1, 1, False)],
    [("conv", 5, 1, 0, 1, False), ("avg", 3, 3, 1, 1, False), ("conv", 3, 2, 2, 1, False)],
    [("conv", 3, 2, 0, 1, False), ("max", 3, 2, 0, 1, True), ("conv", 1, 1, 0, 1, False),
     ("max", 3, 2, 1, 1, True)],
    [("conv", 3, 1, 1, 1, False), ("max", 3, 1, 1, 1, False), ("conv", 2, 2, 0, 1, False)],
]


def build(stack, channels=3):
    layers = []
    for kind, k, s, p, d, ceil in stack:
        if kind == "conv":
            layers += [nn.Conv2d(channels, 4, k, stride=s, padding=p, dilation=d), nn.ReLU()]
            channels = 4
        elif kind == "max":
            layers.append(nn.MaxPool2d(k, s, p, dilation=d, ceil_mode=ceil))
        else:
            layers.append(nn.AvgPool2d(k, s, p, ceil_mode=ceil))
    return nn.Sequential(*layers)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("size", [37, 40])
def test_exact_on_conv_pool_stacks(stack, size):
    net = build(stack).eval()
    name = str(len(net) - 1)
    rf = measure_receptive_field(net, name, size)
    geometry, sizes, n = [], [], size
    for _, k, s, p, d, ceil in stack:
        geometry.append((k, s, p, d))
        sizes.append(n)
        n = out_size(n, k, s, p, d, ceil)
    assert rf.map_shape == (n, n)
    for i in range(n):
        expect = chain_interval(i, geometry, size, sizes)
        assert tuple(rf.rows[i]) == expect == tuple(rf.cols[i]), (i, stack)


def test_dilation_holes_and_functional_calls():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 2, 3, padding=2, dilation=2)
            self.b = nn.Conv2d(2, 2, 3, stride=2)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.a(x)), 2)  # functional: caught by the mode
            return self.b(torch.sigmoid(x) * 3.0 - 1.0)

    rf = receptive_field(Functional().eval(), "b", 24)
    # a: cell j reads j-2, j, j+2 (dilation 2); pool: 2j, 2j+1; b: k3 stride 2 → cells
    # 2m .. 2m+2 of the pooled map, i.e. a-cells 4m .. 4m+5, i.e. input 4m-2 .. 4m+7
    for m in range(rf.map_shape[0]):
        assert tuple(rf.rows[m]) == (max(0, 4 * m - 2), min(24, 4 * m + 8))
    assert receptive_field(Functional().eval(), "b", 24) is not rf  # cache is per model


def test_cache_and_box_function():
    net = build(STACKS[0]).eval()
    first = receptive_field(net, "4", 32)
    assert receptive_field(net, "4", 32) is first
    y, x = torch.tensor([0, 2]).numpy(), torch.tensor([3, 1]).numpy()
    assert first.boxes(y, x).tolist() == [list(first.box(0, 3)), list(first.box(2, 1))]


def test_resnet18_known_numbers():
    from torchvision.models import resnet18

    net = resnet18().eval()
    known = {"conv1": (7, 2), "maxpool": (11, 4), "layer1": (43, 4), "layer2": (99, 8),
             "layer3": (211, 16)}
    stem = [(7, 2, 3, 1), (3, 2, 1, 1)]
    for layer, (size, stride) in known.items():
        rf = receptive_field(net, layer, 224)
        assert rf.size == (size, size) and rf.stride == (stride, stride), layer
    # layer1's main path: stem + four 3×3 convs; the centre cell is the hand arithmetic's
    rf = receptive_field(net, "layer1", 224)
    geometry = stem + [(3, 1, 1, 1)] * 4
    sizes = [224, 112] + [56] * 4
    for i in (0, 1, 27, 55):
        assert tuple(rf.rows[i]) == chain_interval(i, geometry, 224, sizes)
    assert rf.box(28, 28) == (91, 91, 134, 134)
    # a block's in-place `out += identity` and the downsample branch change nothing
    assert receptive_field(net, "layer2.0", 224).size == (67, 67)
    assert receptive_field(net, "layer4", 224).size == (224, 224)


def test_googlenet_ceil_mode_pools_and_branches():
    from torchvision.models import googlenet

    # transform_input (on with ImageNet weights) shifts the input by constants first
    net = googlenet(weights=None, aux_logits=False, init_weights=False,
                    transform_input=True).eval()
    # conv1 7/2 → maxpool1 3/2 → conv2 1×1 → conv3 3×3 → maxpool2 3/2 → inception3a (3×3)
    for layer, size, stride in (("conv1", 7, 2), ("maxpool1", 11, 4), ("conv3", 19, 4),
                                ("maxpool2", 27, 8), ("inception3a", 43, 8)):
        rf = receptive_field(net, layer, 224)
        assert rf.size == (size, size) and rf.stride == (stride, stride), layer


def test_bundled_efficientnet_same_padding_is_asymmetric_and_size_dependent():
    from app.engine.runtime.efficientnet_lite import EfficientNetLite0

    net = EfficientNetLite0().eval()
    rf = receptive_field(net, "_conv_stem", 224)
    # TF "SAME", stride 2, k3 on 224: 0 pixels of padding before, 1 after
    assert rf.box(0, 0) == (0, 0, 3, 3) and rf.box(1, 1) == (2, 2, 5, 5)
    assert rf.box(111, 111) == (222, 222, 224, 224)
    odd = receptive_field(net, "_conv_stem", 225)  # 225: one pixel before, one after
    assert odd.box(0, 0) == (0, 0, 2, 2) and odd.box(1, 1) == (1, 1, 4, 4)
    b1 = receptive_field(net, "_blocks.1", 224)
    # stem rows [2i, 2i+3) → block0 3×3 → block1 depthwise 3×3 stride 2, SAME (0 before)
    assert b1.box(0, 0) == (0, 0, 9, 9) and b1.box(1, 1) == (2, 2, 13, 13)
    assert b1.size == (11, 11) and b1.stride == (4, 4)
    for layer, size, stride in (("_blocks.4", 67, 8), ("_blocks.8", 211, 16),
                                ("_blocks.15", 224, 32)):
        rf = receptive_field(net, layer, 224)
        assert rf.size == (size, size) and rf.stride == (stride, stride), layer


@pytest.mark.parametrize("collapse", [True, False])
def test_a_tap_zero_in_every_filter_is_not_in_the_field(collapse):
    # Conv2dSame widens depthwise kernels by a zero row/column for asymmetric SAME pads; a
    # tap that no filter uses connects nothing, in the collapsed probe and the full one
    from app.engine.runtime import receptive_field as rf_module

    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight[..., 0] = 0  # the left column of every filter
        conv.weight[1, 2, 0, 2] = 0  # one weight alone: its tap is still used elsewhere
    net = nn.Sequential(conv, nn.ReLU()).eval()
    field = rf_module._measure(rf_module.linearized_copy(net), "0", 12,
                               rf_module._Support(collapse=collapse))
    assert field.box(5, 5) == (4, 5, 7, 7)
    assert field.box(0, 0) == (0, 0, 2, 2)


def test_frame_box_maps_model_pixels_to_the_frame():
    crop = (110, 30, 420, 420)  # Preprocess(224, 0.875).crop_box(480, 640)
    assert to_frame_box((0, 0, 224, 224), crop, 224, (480, 640)) == (30, 110, 450, 530)
    assert to_frame_box((10, 20, 30, 40), crop, 224, (480, 640)) == (48, 147, 87, 185)
    # outside the frame: clipped, and never empty (a crop of it must have a pixel)
    assert to_frame_box((-50, -50, 0, 0), crop, 224, (480, 640)) == (0, 16, 30, 110)
    assert to_frame_box((300, 300, 400, 400), crop, 224, (480, 640)) == (479, 639, 480, 640)


def test_stride_when_every_box_is_clipped_by_the_border():
    # four 3×3 stride-2 convs (padding 1): stride 16 and a 31-px field. On a 24-px input
    # row 0 reaches input rows [-15, 15] and row 1 [1, 31] (by hand, layer by layer), so
    # both boxes are cut by the border and the boxes alone cannot show the stride
    net = build([("conv", 3, 2, 1, 1, False)] * 4).eval()
    rf = receptive_field(net, "6", 24)
    assert rf.map_shape == (2, 2) and rf.rows.tolist() == [[0, 16], [1, 24]]
    assert rf.stride == (16.0, 16.0)  # not 24 / 2 = 12
    # an unclipped input of the same net measures the same stride from its boxes
    assert receptive_field(net, "6", 160).stride == (16.0, 16.0)


@pytest.mark.slow
def test_inception_v3_deep_layers_report_their_true_stride():
    import torchvision

    net = torchvision.models.inception_v3(weights=None, aux_logits=False,
                                          init_weights=False).eval()
    for layer, stride in (("Mixed_6c", 16.0), ("Mixed_7a", 32.0)):
        rf = receptive_field(net, layer, 299)  # was 17.588 and 37.375 (299 / map size)
        assert rf.size == (299, 299) and rf.stride == (stride, stride), layer
