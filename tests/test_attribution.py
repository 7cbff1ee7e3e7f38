"""Attribution of a unit to the input: gradient, deconvnet and guided backprop.

The hand-weighted net below has, at the attributed pixel, rectifier inputs h = [1, -2, 2, 10]
and a next layer with weights w = [-1, 2, 3, 4], so the three rules disagree everywhere:

    input signal = Σ_i a_i · rule(w_i, h_i),  a = [1, 1, 2, 1] (first conv's weights)
    gradient   w_i · [h_i > 0]          ReLU: -1 + 6 + 4 = 9    ReLU6 (10 saturates): -1 + 6 = 5
    deconvnet  max(w_i, 0)              ReLU: 2 + 6 + 4 = 12    ReLU6: 12 (no forward gate)
    guided     max(w_i, 0) · [h_i > 0]  ReLU: 6 + 4 = 10        ReLU6: 6
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from app.engine.analyses.attribution.attributor import (
    MODES,
    AttributionError,
    Attributor,
)
from tests.tiny_nets import TinyNet, tiny_input


class Hand(nn.Module):
    """conv 1×1 (1→4) → rectifier → conv 1×1 (4→1) → head that must never run."""

    def __init__(self, rectifier: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 1)
        self.act = rectifier
        self.conv2 = nn.Conv2d(4, 1, 1, bias=False)
        self.head = Explode()
        with torch.no_grad():
            self.conv1.weight.copy_(torch.tensor([1.0, 1.0, 2.0, 1.0]).view(4, 1, 1, 1))
            self.conv1.bias.copy_(torch.tensor([0.0, -3.0, 0.0, 9.0]))
            self.conv2.weight.copy_(torch.tensor([-1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv2(self.act(self.conv1(x))))


class Explode(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the forward should have stopped at the target layer")


# pixel (0, 0) has x = 1 (h = [1, -2, 2, 10]); pixel (0, 1) has x = 0 (h = [0, -3, 0, 9])
X = torch.tensor([[[[1.0, 0.0]]]])

EXPECTED = {
    # (rectifier, mode): signal at pixel (0, 0) when the unit's maximum (there) is attributed
    ("relu", "gradient"): 9.0, ("relu", "deconvnet"): 12.0, ("relu", "guided"): 10.0,
    ("relu6", "gradient"): 5.0, ("relu6", "deconvnet"): 12.0, ("relu6", "guided"): 6.0,
}


def _rect(kind: str, inplace: bool = False) -> nn.Module:
    return nn.ReLU(inplace=inplace) if kind == "relu" else nn.ReLU6(inplace=inplace)


@pytest.mark.parametrize("kind", ["relu", "relu6"])
@pytest.mark.parametrize("mode", MODES)
def test_three_modes_equal_hand_computed_values(kind, mode):
    net = Hand(_rect(kind)).eval()
    result = Attributor(net, mode).attribute_full(X, "conv2", 0)
    assert result.position == (0, 0)
    # the unit's max: relu: -1+6+40 = 45 (vs 36); relu6: -1+6+24 = 29 (vs 24)
    assert result.value == (45.0 if kind == "relu" else 29.0)
    assert result.signal.shape == (1, 1, 2)
    assert result.signal[0, 0, 0] == pytest.approx(EXPECTED[(kind, mode)])
    assert result.signal[0, 0, 1] == 0.0  # a 1×1 net: no other pixel reaches that unit
    assert result.saliency.dtype == np.float32 and result.saliency.shape == (1, 2)
    assert result.saliency[0, 0] == pytest.approx(abs(EXPECTED[(kind, mode)]))


@pytest.mark.parametrize(("mode", "expected"), [("gradient", 4.0), ("deconvnet", 12.0),
                                                ("guided", 4.0)])
def test_a_given_position_is_attributed_not_the_max(mode, expected):
    # at pixel (0, 1): h = [0, -3, 0, 9]; h = 0 exactly is outside the gate (as in autograd)
    result = Attributor(Hand(nn.ReLU()).eval(), mode).attribute_full(X, "conv2", 0, (0, 1))
    assert result.position == (0, 1) and result.value == 36.0
    assert result.signal[0, 0, 1] == pytest.approx(expected)
    assert result.signal[0, 0, 0] == 0.0


def test_gradient_mode_is_autograd_and_the_live_model_is_untouched():
    net = Hand(nn.ReLU6()).eval()
    calls = []
    net.conv1.register_forward_hook(lambda *a: calls.append(1))
    attributor = Attributor(net, "guided")
    attributor.attribute(X, "conv2", 0)
    attributor.mode = "gradient"
    signal = attributor.attribute_full(X, "conv2", 0).signal
    assert not calls, "the live model's hooks must not fire"
    assert isinstance(net.act, nn.ReLU6), "the live model's modules must not be swapped"
    x = X.clone().requires_grad_(True)
    out = net.conv2(net.act(net.conv1(x)))
    (ref,) = torch.autograd.grad(out[0, 0, 0, 0], x)
    assert torch.equal(torch.from_numpy(signal), ref[0])


class Residual(nn.Module):
    """Two residual blocks with ReLUs, in place (as torchvision's ResNet) or not."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        self.inplace = inplace
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=inplace)  # reused, as ResNet's BasicBlock does
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.relu6 = nn.ReLU6(inplace=inplace)
        self.top = nn.Conv2d(4, 5, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.stem(x))
        out = self.a(x)
        if self.inplace:
            out += x
        else:
            out = out + x
        x = self.relu(out)
        out = self.relu6(self.b(x))
        out = out + x
        return self.top(out)


@pytest.mark.parametrize("mode", MODES)
def test_in_place_relus_and_residuals_give_the_same_attribution(mode):
    torch.manual_seed(0)
    plain = Residual(inplace=False).eval()
    inplace = Residual(inplace=True).eval()
    inplace.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 9, 9)
    for layer, unit in (("top", 2), ("relu6", 1), ("relu:1", 3)):
        a = Attributor(plain, mode).attribute_full(x, layer, unit)
        b = Attributor(inplace, mode).attribute_full(x, layer, unit)
        assert a.position == b.position
        np.testing.assert_array_equal(a.signal, b.signal)
        assert np.abs(a.signal).max() > 0


def test_modes_differ_on_a_real_residual_net():
    torch.manual_seed(1)
    net = Residual(inplace=True).eval()
    x = torch.randn(1, 3, 9, 9)
    sig = {m: Attributor(net, m).attribute_full(x, "top", 0, (4, 4)).signal for m in MODES}
    assert not np.allclose(sig["gradient"], sig["deconvnet"])
    assert not np.allclose(sig["gradient"], sig["guided"])
    assert not np.allclose(sig["deconvnet"], sig["guided"])


class Functional(nn.Module):
    """Residual's weights, rectified with F.relu / F.relu6 instead of modules."""

    def __init__(self, like: Residual) -> None:
        super().__init__()
        self.stem, self.a, self.b, self.top = like.stem, like.a, like.b, like.top

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x), inplace=True)
        x = torch.relu(self.a(x) + x)
        out = F.relu6(self.b(x))
        return self.top(out + x)


@pytest.mark.parametrize("mode", MODES)
def test_functional_relus_are_handled_like_modules(mode):
    torch.manual_seed(2)
    ref = Residual(inplace=False).eval()
    fun = Functional(copy.deepcopy(ref)).eval()
    x = torch.randn(1, 3, 9, 9)
    a = Attributor(ref, mode).attribute_full(x, "top", 1)
    b = Attributor(fun, mode).attribute_full(x, "top", 1)
    np.testing.assert_allclose(a.signal, b.signal, rtol=1e-6, atol=1e-7)


def test_a_reused_module_is_addressed_by_call():
    # TinyNet: in-place ReLU, `shared` conv run twice with an in-place residual between
    net = TinyNet().eval()
    x = tiny_input()
    first = Attributor(net, "gradient").attribute_full(x, "shared", 0)
    second = Attributor(net, "gradient").attribute_full(x, "shared:1", 0)
    # relu(conv) = y with y0 = window sums (12..28), y1 = 0. shared swaps channels:
    # call 0, unit 0 = y1 = 0 → no signal; call 1, unit 0 = (y0 + y1) = y0 → the window
    assert first.value == 0.0 and np.abs(first.signal).max() == 0.0
    assert second.value == 28.0 and second.position == (1, 1)
    expected = np.zeros((1, 3, 3), np.float32)
    expected[0, 1:, 1:] = 1.0  # d(window sum at (1, 1))/dx
    np.testing.assert_array_equal(second.signal, expected)


def test_bad_requests_say_what_is_wrong():
    att = Attributor(Hand(nn.ReLU()).eval())
    with pytest.raises(AttributionError, match="no layer named"):
        att.attribute(X, "nope", 0)
    with pytest.raises(AttributionError, match="out of range"):
        att.attribute(X, "conv2", 3)
    with pytest.raises(AttributionError, match="outside"):
        att.attribute(X, "conv2", 0, (5, 0))
    with pytest.raises(AttributionError, match="unknown attribution mode"):
        att.mode = "lrp"

    class Faulty(Hand):  # the model's own KeyError is the model's error, not "no layer"
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        Attributor(Faulty(nn.ReLU()).eval()).attribute(X, "conv2", 0)


@pytest.mark.slow
@pytest.mark.parametrize("layer", [
    "_blocks.10",  # a block's output
    "_blocks.10._project_conv",  # a conv whose batch norm the fast copy folds in
    "_blocks.10._bn2",  # that batch norm (an Identity in the fast copy)
])
def test_bundled_model_gradient_mode_equals_autograd_and_guided_is_sharper(layer):
    from app.engine.runtime.device import pick_device
    from app.engine.runtime.models import load_bundled
    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
    from tests.photos import chelsea

    loaded = load_bundled(pick_device("cpu"))
    x = prepare_batch([frame_to_tensor(chelsea(), loaded.device)], loaded.preprocess)
    att = Attributor(loaded, "gradient")  # fast: batch norms folded, channels-last
    unit = 5
    got = att.attribute_full(x, layer, unit)
    assert len(att._unfold) > 30  # the fast copy really is folded
    kept = {}
    h = loaded.module.get_submodule(layer).register_forward_hook(
        lambda _m, _i, o: kept.setdefault("o", o))
    xi = x.clone().requires_grad_(True)
    try:
        loaded.module(xi)
    finally:
        h.remove()
    target = kept["o"][0, unit][got.position]
    (ref,) = torch.autograd.grad(target, xi)
    # folding changes float rounding; where a ReLU6 input sits on its 0 or 6 threshold the
    # gate can flip, so a few dozen of 150k pixels move by ~1e-4 of the map's maximum
    np.testing.assert_allclose(got.signal, ref[0].numpy(), rtol=1e-3,
                               atol=3e-4 * float(ref.abs().max()))
    assert got.value == pytest.approx(float(target.detach()), rel=1e-4, abs=1e-4)
    att.mode = "guided"
    guided = att.attribute(x, layer, unit)
    # guided backprop's map is concentrated where the unit looks: most of the image is ~0
    assert guided.shape == (224, 224)
    assert (guided > 0.01 * guided.max()).mean() < 0.5
