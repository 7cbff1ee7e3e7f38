"""EfficientNet-Lite0: hookable layout, TF "SAME" padding, bundled weights on real photos."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.engine.runtime.efficientnet_lite import (
    PREPROCESS,
    Conv2dSame,
    EfficientNetLite0,
    build_efficientnet_lite0,
    bundled_weights_path,
)

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967
DRESS_CLASSES = {652, 834, 906}  # military uniform, suit, Windsor tie


def _preprocess(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, size, size): shorter side to size/crop_fraction, crop."""
    size = PREPROCESS.size
    x = torch.from_numpy(np.array(image[..., :3], dtype=np.float32) / 255.0)
    x = x.permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    scale = round(size / PREPROCESS.crop_fraction) / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear",
                      antialias=True, align_corners=False)
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    x = x[..., top:top + size, left:left + size].clamp(0.0, 1.0)
    mean = torch.tensor(PREPROCESS.mean).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS.std).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.fixture(scope="module")
def model() -> EfficientNetLite0:
    return build_efficientnet_lite0()


def _probabilities(model: nn.Module, image: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model(_preprocess(image)).softmax(1)[0]


def test_every_module_has_one_unique_name():
    net = EfficientNetLite0()
    named = list(net.named_modules(remove_duplicate=False))
    assert len({name for name, _ in named}) == len(named)
    assert len({id(module) for _, module in named}) == len(named)
    assert "_blocks.5._depthwise_conv" in dict(named)


def test_each_relu6_runs_once_per_forward_and_not_in_place():
    net = EfficientNetLite0().eval()
    calls: Counter[str] = Counter()
    relus = {n: m for n, m in net.named_modules() if isinstance(m, nn.ReLU6)}
    handles = [m.register_forward_hook(lambda *_, n=n: calls.update([n])) for n, m in relus.items()]
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, 3, 224, 224))
    finally:
        for handle in handles:
            handle.remove()
    assert out.shape == (1, 1000)
    # stem + head + 2 per block (the first block has no expansion) = 2 + 2*16 - 1
    assert len(relus) == 33
    assert calls == Counter(list(relus))
    assert not any(m.inplace for m in relus.values())


def _tf_same_pads(size: int, kernel: int) -> tuple[int, int]:
    # TF puts the odd pixel of padding after (bottom/right), never before.
    total = max((-(-size // 2) - 1) * 2 + kernel - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize("size", [224, 225, 7, 8])
@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_matches_tensorflow(kernel, size):
    conv = Conv2dSame(1, 1, kernel, stride=2)
    x = torch.randn(1, 1, size, size)
    out = conv(x)
    assert out.shape[-1] == -(-size // 2)
    before, after = _tf_same_pads(size, kernel)
    expected = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, stride=2)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(("height", "width"), [(114, 114), (36, 57), (57, 36), (15, 15), (8, 9)])
@pytest.mark.parametrize("kernel", [3, 5])
def test_depthwise_same_padding_matches_a_padded_copy_with_gradients(kernel, height, width):
    # depthwise convolutions take another route to asymmetric SAME pads (a wider kernel with
    # a zero first row/column), so check both the output and the input gradient against
    # the plain pad-then-convolve definition
    conv = Conv2dSame(6, 6, kernel, stride=2, groups=6, bias=True)
    x = torch.randn(2, 6, height, width, requires_grad=True)
    out = conv(x)
    (grad,) = torch.autograd.grad((out * torch.arange(out.numel()).view_as(out).sin()).sum(), x)
    top, bottom = _tf_same_pads(height, kernel)
    left, right = _tf_same_pads(width, kernel)
    x_ref = x.detach().clone().requires_grad_()
    expected = F.conv2d(F.pad(x_ref, (left, right, top, bottom)), conv.weight, conv.bias,
                        stride=2, groups=6)
    (grad_ref,) = torch.autograd.grad(
        (expected * torch.arange(expected.numel()).view_as(expected).sin()).sum(), x_ref)
    assert out.shape == expected.shape == (2, 6, -(-height // 2), -(-width // 2))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad, grad_ref)


@pytest.mark.slow
def test_bundled_weights_load_strictly_with_weights_only():
    state = torch.load(bundled_weights_path(), map_location="cpu", weights_only=True)
    net = EfficientNetLite0()
    assert list(net.state_dict()) == list(state)
    net.load_state_dict(state, strict=True)


@pytest.mark.slow
def test_model_is_in_eval_mode_with_1000_logits(model):
    assert not model.training
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


@pytest.mark.slow
def test_cat_photo_is_a_cat(model):
    data = pytest.importorskip("skimage.data")
    probs = _probabilities(model, data.chelsea())
    assert int(probs.argmax()) in CAT_CLASSES
    assert float(probs[sorted(CAT_CLASSES)].sum()) > 0.7


@pytest.mark.slow
def test_coffee_photo_is_espresso(model):
    data = pytest.importorskip("skimage.data")
    probs = _probabilities(model, data.coffee())
    assert int(probs.argmax()) == ESPRESSO
    assert float(probs[ESPRESSO]) > 0.5


@pytest.mark.slow
def test_grace_hopper_is_dressed_formally(model):
    cbook = pytest.importorskip("matplotlib.cbook")
    image = pytest.importorskip("matplotlib.image")
    probs = _probabilities(model, image.imread(cbook.get_sample_data("grace_hopper.jpg")))
    top5 = set(probs.topk(5).indices.tolist())
    assert top5 & DRESS_CLASSES
