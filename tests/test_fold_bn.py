"""Folding eval-mode batch norms into convolutions on a private copy (gradient ascent's model)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from app.engine.runtime.fold_bn import find_pairs, fold_batchnorms
from app.engine.runtime.truncate import TruncatedModel

CPU = torch.device("cpu")


def _run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def _randomize_bn_stats(net: nn.Module) -> nn.Module:
    """Batch norms whose fold is not the identity: random running stats and affine params."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g))
    return net.eval()


class Chain(nn.Module):
    """conv→bn→relu6, a biased depthwise conv→bn, then a conv with no norm after it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU6())
        self.dw = nn.Conv2d(8, 8, 3, stride=2, groups=8, bias=True)
        self.bn = nn.BatchNorm2d(8)
        self.out = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.bn(self.dw(self.stem(x))))


class Skip(Chain):
    """The depthwise conv's raw output also feeds a skip: folding it would change the sum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(self.stem(x))
        return self.out(self.bn(y) + y)


def test_fold_keeps_outputs_and_removes_every_batch_norm():
    net = _randomize_bn_stats(Chain())
    x = torch.randn(2, 3, 17, 17)
    with torch.no_grad():
        before = net(x)
    assert fold_batchnorms(net, x, _run) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert isinstance(net.stem[1], nn.Identity) and isinstance(net.bn, nn.Identity)
    assert net.stem[0].bias is not None and not net.stem[0].bias.requires_grad
    with torch.no_grad():
        after = net(x)
    assert torch.allclose(after, before, atol=1e-5, rtol=1e-5)
    # input gradients, what gradient ascent uses, agree too
    net2 = _randomize_bn_stats(Chain())
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    net2(xa).square().sum().backward()
    net(xb).square().sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-4, rtol=1e-4)


def test_fold_is_undone_when_a_conv_output_is_used_elsewhere():
    net = _randomize_bn_stats(Skip())
    x = torch.randn(1, 3, 17, 17)
    with torch.no_grad():
        before = net(x)
    assert len(find_pairs(net, x, _run)) == 2  # the hooks cannot see the skip ...
    assert fold_batchnorms(net, x, _run) == 0  # ... the numeric check can, and undoes all
    assert isinstance(net.bn, nn.BatchNorm2d) and isinstance(net.stem[1], nn.BatchNorm2d)
    assert net.dw.bias is not None and net.stem[0].bias is None
    with torch.no_grad():
        assert torch.equal(net(x), before)


def test_kept_modules_and_training_mode_are_left_alone():
    net = _randomize_bn_stats(Chain())
    x = torch.randn(1, 3, 9, 9)
    assert fold_batchnorms(net, x, _run, keep=[net.dw]) == 1  # the target conv keeps its output
    assert isinstance(net.bn, nn.BatchNorm2d)
    train = Chain().train()
    assert fold_batchnorms(train, x, _run) == 0


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["_blocks.8", "_blocks.8._project_conv", "_blocks.3._bn1"])
def test_fast_truncated_copy_of_the_bundled_model_gives_the_same_layer(layer):
    from app.engine.runtime.models import load_bundled

    loaded = load_bundled(CPU)
    x = torch.rand(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    plain = TruncatedModel(loaded.module, layer, CPU)
    fast = TruncatedModel(loaded.module, layer, CPU, fast=True)
    with torch.no_grad():
        want, got = plain(x), fast(x)  # the first call folds
    assert fast.folded >= 8 and fast.channels_last and fast.clamped >= 8
    assert torch.allclose(got, want, atol=1e-4 * float(want.abs().max()))
    # gradient ascent's gradient through the sped-up copy is the plain copy's, up to the
    # fold's rounding (which moves a few values across a ReLU6's 0 or 6; the in-place clamp
    # itself is exact, tested on a tiny net below)
    grads = []
    for tm in (plain, fast):
        xi = x.clone().requires_grad_(True)
        tm(xi)[:, :4].mean().backward()
        grads.append(xi.grad)
    assert torch.allclose(grads[1], grads[0], atol=5e-3 * float(grads[0].abs().max()))
    # the live model is untouched: still every batch norm and ReLU6 it had
    assert sum(isinstance(m, nn.BatchNorm2d) for m in loaded.module.modules()) == 49
    assert sum(type(m) is nn.ReLU6 for m in loaded.module.modules()) == 33


class SkipAfterNorm(nn.Module):
    """relu(bn(y) + y): folding bn into the conv changes the skip's y as well."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return torch.relu(self.bn(y) + y)


def test_the_check_is_not_fooled_by_an_example_where_everything_is_zero():
    net = SkipAfterNorm().eval()
    with torch.no_grad():
        net.bn.weight.fill_(2.0)  # bn(y) = 2y: the fold would make the skip 2y too
        net.conv.weight.mul_(3.0)
        net.conv.bias.fill_(-2.0)  # on an all-zero input every output is cut to zero
    zeros = torch.zeros(1, 3, 8, 8)
    with torch.no_grad():
        assert float(net(zeros).abs().max()) == 0.0
    assert fold_batchnorms(net, zeros, _run) == 0  # the noise input exposes the skip
    assert isinstance(net.bn, nn.BatchNorm2d)


def test_a_check_that_raises_undoes_the_fold_and_the_fast_copy_still_works():
    class ReadsItsNorm(Chain):  # NAM-style attention reads the batch norm's weights
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = self.bn.weight.abs() / self.bn.weight.abs().sum()
            return self.out(self.bn(self.dw(self.stem(x))) * w.view(1, -1, 1, 1))

    net = _randomize_bn_stats(ReadsItsNorm())
    x = torch.randn(1, 3, 9, 9)
    with torch.no_grad():
        want = net(x)
    with pytest.raises(AttributeError):
        fold_batchnorms(net, x, _run)
    assert isinstance(net.bn, nn.BatchNorm2d) and net.dw.bias is not None
    with torch.no_grad():
        assert torch.equal(net(x), want)  # exactly the model it was
    fast = TruncatedModel(net, "out", CPU, fast=True)
    with torch.no_grad():
        assert torch.allclose(fast(x), want, atol=1e-5) and fast.folded == 0


def test_subclasses_of_batch_norm_are_left_alone_and_the_rest_still_folds():
    class NormAct(nn.BatchNorm2d):  # timm-style: the norm and an activation in one module
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(super().forward(x))

    net = Chain()
    net.bn = NormAct(8)
    net = _randomize_bn_stats(net)
    x = torch.randn(1, 3, 9, 9)
    assert fold_batchnorms(net, x, _run) == 1  # the stem's plain batch norm
    assert type(net.bn) is NormAct and isinstance(net.stem[1], nn.Identity)


def test_fast_copy_of_a_model_that_views_its_maps_keeps_the_default_layout():
    class Flattens(nn.Module):  # x.view(n, -1) on a feature map: no channels-last for it
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4 * 6 * 6, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.fc(y.view(y.size(0), -1))

    net = Flattens().eval()
    x = torch.randn(2, 3, 8, 8)
    fast = TruncatedModel(net, "fc", CPU, fast=True)
    with torch.no_grad():
        assert torch.allclose(fast(x), net(x), atol=1e-6)
    assert not fast.channels_last


def test_kept_copies_are_reused_only_for_the_same_model_layer_and_weights():
    from app.engine.runtime.truncate import TruncatedCopies

    net = _randomize_bn_stats(Chain())
    copies = TruncatedCopies(keep=2)
    first = copies.take(net, "dw", CPU)
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        want = first(x)
    copies.give_back(first)
    again = copies.take(net, "dw", CPU)
    assert again is first  # kept, prepared, no second copy
    assert copies.take(net, "dw", CPU) is not first  # taken already: one user at a time
    copies.give_back(again)
    assert copies.take(net, "stem", CPU) is not first  # another layer: another copy
    with torch.no_grad():  # the model changes in place: the kept copy is stale
        net.out.weight.add_(1.0)
        net.dw.weight.mul_(2.0)
    fresh = copies.take(net, "dw", CPU)
    assert fresh is not first
    with torch.no_grad():
        assert not torch.allclose(fresh(x), want)
    # at most `keep` copies are held, the most recent
    copies.give_back(fresh)
    for layer in ("stem", "bn"):
        copies.give_back(copies.take(net, layer, CPU))
    assert copies.take(net, "dw", CPU) is not fresh


class ReluThenSkip(nn.Module):
    """relu6(y) + y: clamping y in place would change the skip's y."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU6()
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.out(self.act(y) + y)


def test_activations_clamp_in_place_only_where_that_changes_nothing():
    from app.engine.runtime.inplace_clamp import ClampInPlace, clamp_in_place

    x = torch.randn(2, 3, 12, 12) * 3  # values below 0 and above 6 both occur
    net, reference = Chain().eval(), Chain().eval()
    assert clamp_in_place(net, x, _run) == 1
    assert isinstance(net.stem[2], ClampInPlace)
    # the oracle: the untouched model's output and the gradient reaching its input
    for model in (reference, net):
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        out.square().sum().backward()
        if model is reference:
            want, want_grad = out.detach(), xi.grad
    assert torch.equal(out.detach(), want) and torch.equal(xi.grad, want_grad)
    with torch.no_grad():  # and without autograd
        assert torch.equal(net(x), reference(x))

    skip = ReluThenSkip().eval()
    want = skip(x)
    assert clamp_in_place(skip, x, _run) == 0  # the check saw the skip's changed values
    assert type(skip.act) is nn.ReLU6
    with torch.no_grad():
        torch.testing.assert_close(skip(x), want)
    kept = Chain().eval()  # a module in `keep` stays as it is
    assert clamp_in_place(kept, x, _run, keep=[kept.stem[2]]) == 0
    assert type(kept.stem[2]) is nn.ReLU6


class TwoBranches(nn.Module):
    """relu6(conv_a(x)) + conv_b(x): the add hands the very same gradient tensor to both
    branches, so a ReLU6 backward that masked its incoming gradient in place would corrupt
    what conv_b's backward reads."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU6()
        self.conv_b = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # conv_b first: the engine runs newer nodes first, so the ReLU6's backward comes
        # before conv_b's and would change the gradient under it
        b = self.conv_b(x)
        return self.act(self.conv_a(x)) + b


def _input_grad(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    xi = x.clone().requires_grad_(True)
    model(xi).square().sum().backward()
    assert xi.grad is not None
    return xi.grad


def test_the_in_place_backward_never_corrupts_a_gradient_another_branch_reads():
    from app.engine.runtime.inplace_clamp import ClampInPlace, clamp_in_place

    x = torch.randn(2, 3, 10, 10) * 3
    want = _input_grad(TwoBranches().eval(), x)
    # swapped blindly, the masked-in-place gradient reaches conv_b: a wrong input gradient
    blind = TwoBranches().eval()
    blind.act = ClampInPlace(0.0, 6.0)
    assert not torch.allclose(_input_grad(blind, x), want)
    # through the check: the clamp stays in place, its backward takes a buffer of its own
    checked = TwoBranches().eval()
    assert clamp_in_place(checked, x, _run) == 1
    assert isinstance(checked.act, ClampInPlace) and not checked.act.mask_in_place
    assert torch.equal(_input_grad(checked, x), want)
    # one consumer only (the gradient is the conv backward's own): masked in place, exact
    net, reference = Chain().eval(), Chain().eval()
    assert clamp_in_place(net, x, _run) == 1
    assert isinstance(net.stem[2], ClampInPlace) and net.stem[2].mask_in_place
    assert torch.equal(_input_grad(net, x), _input_grad(reference, x))
