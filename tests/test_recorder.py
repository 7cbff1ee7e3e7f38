"""ActivationRecorder on a tiny hand-weighted net: exact values, in-place safety, cleanup."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from app.core.tiling import grid_geometry, normalize_channels
from app.engine.runtime.recorder import ActivationRecorder, default_layer, discover_layers
from app.engine.runtime.tiling import normalize_on_device, tile_on_device
from tests.tiling_reference import tile_channels
from tests.tiny_nets import TinyNet, tiny_input

WINDOW_SUMS = torch.tensor([[12.0, 16.0], [24.0, 28.0]])


def _expected() -> dict[str, torch.Tensor]:
    conv = torch.stack([WINDOW_SUMS, -WINDOW_SUMS - 1])  # (2, 2, 2)
    relu = conv.clamp(min=0)
    shared0 = relu.flip(0)  # the 1×1 conv swaps channels
    summed = shared0 + relu
    shared1 = summed.flip(0)
    pool = shared1.mean((1, 2)).view(2, 1, 1)
    # fc: [[1, 0], [0, 1], [1, 1]], no bias: the class scores, one 1×1 unit each
    p = pool.flatten()
    logits = torch.stack([p[0], p[1], p[0] + p[1]]).view(3, 1, 1)
    return {"conv": conv, "relu": relu, "shared": shared0, "shared:1": shared1, "pool": pool,
            "logits": logits}


def test_records_exact_activations_despite_in_place_ops():
    net = TinyNet().eval()
    with torch.no_grad(), ActivationRecorder(net) as rec:
        logits = rec.run(tiny_input())
        acts = {k: v[0] for k, v in rec.activations.items()}
    expected = _expected()
    assert set(acts) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(acts[name], value, rtol=0, atol=0)
    # conv's output is overwritten by the in-place ReLU, `shared` by `z += y`
    assert {"conv", "shared"} <= rec.clone_layers
    assert "relu" not in rec.clone_layers
    torch.testing.assert_close(logits, net(tiny_input()))


def test_every_pass_after_the_first_is_exact_too():
    net = TinyNet().eval()
    with torch.no_grad(), ActivationRecorder(net) as rec:
        rec.run(tiny_input())
        rec.run(tiny_input() * 2)
        torch.testing.assert_close(rec.activations["conv"][0, 0], WINDOW_SUMS * 2)


def test_hooks_come_off_on_exit_and_on_error():
    net = TinyNet().eval()
    with torch.no_grad(), ActivationRecorder(net) as rec:
        rec.run(tiny_input())
    assert all(not m._forward_hooks for m in net.modules())
    try:
        with ActivationRecorder(net):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert all(not m._forward_hooks for m in net.modules())


def test_layer_subset_and_infos():
    net = TinyNet().eval()
    with torch.no_grad(), ActivationRecorder(net, layers=["relu"]) as rec:
        rec.run(tiny_input())
    assert list(rec.activations) == ["relu"]
    infos = rec.layer_infos()
    assert infos[0].shape == (2, 2, 2) and infos[0].kind == "ReLU"


def test_the_output_is_the_last_layer_logits_one_unit_per_class():
    net = TinyNet().eval()
    with torch.no_grad(), ActivationRecorder(net) as rec:
        out = rec.run(tiny_input())
    infos = rec.layer_infos()
    assert infos[-1].name == "logits" and infos[-1].shape == (3, 1, 1)
    assert infos[-1].kind == "output"
    torch.testing.assert_close(rec.activations["logits"][:, :, 0, 0], out, rtol=0, atol=0)
    with torch.no_grad(), ActivationRecorder(net, layers=["logits"]) as rec:
        rec.run(tiny_input())
    assert list(rec.activations) == ["logits"]


def test_discover_layers_on_a_torchvision_resnet_sees_residual_overwrites():
    from torchvision.models import resnet18

    net = resnet18(weights=None).eval()  # random weights: mechanics only
    layers, clone = discover_layers(net, 64, torch.device("cpu"))
    names = [i.name for i in layers]
    assert names[0] == "conv1" and "layer4.1" in names
    assert dict((i.name, i.shape) for i in layers)["layer4.1"] == (512, 2, 2)
    # bn2's output is overwritten by `out += identity`; bn1's by the in-place ReLU
    assert "layer1.0.bn2" in clone and "layer1.0.bn1" in clone
    # the in-place ReLU runs twice per block: both calls are recorded
    assert "layer1.0.relu:1" in names
    assert default_layer(layers).startswith("layer")


def test_recorded_resnet_block_output_matches_a_manual_forward():
    from torchvision.models import resnet18

    torch.manual_seed(0)
    net = resnet18(weights=None).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), ActivationRecorder(net) as rec:
        rec.run(x)
        block = net.layer1[0]
        stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        expected_bn2 = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(stem)))))
        torch.testing.assert_close(rec.activations["layer1.0.bn2"], expected_bn2)
        torch.testing.assert_close(rec.activations["layer1.0"], net.layer1[0](stem))


def test_device_tiling_equals_core_tiling():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(13, 5, 6)).astype(np.float32)
    acts[3] = 2.0  # a constant channel
    g = grid_geometry(13, 5, 6)
    for per_channel in (True, False):
        core = tile_channels(normalize_channels(acts, per_channel), g)
        dev = tile_on_device(normalize_on_device(torch.from_numpy(acts), per_channel), g)
        np.testing.assert_array_equal(dev.numpy(), core)


def test_a_module_in_a_container_is_recorded_with_its_dotted_name():
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3)), nn.ReLU()).eval()
    with torch.no_grad(), ActivationRecorder(net) as rec:
        rec.run(torch.zeros(1, 3, 8, 8))
    assert list(rec.activations) == ["0.0", "0", "1"]


def test_calls_outside_run_record_nothing():
    net = TinyNet().eval()
    with torch.no_grad(), ActivationRecorder(net) as rec:
        rec.run(tiny_input())
        kept = dict(rec.activations)
        for _ in range(3):
            net(tiny_input())  # e.g. a benchmark's bare forward while hooks are on
        assert rec.activations.keys() == kept.keys()
        assert all(rec.activations[k] is kept[k] for k in kept)


def test_split_layer_name_inverts_repeat_name():
    from app.engine.runtime.recorder import repeat_name, split_layer_name

    for name, call in (("layer1.0.relu", 0), ("layer1.0.relu", 1), ("_blocks.4", 3)):
        assert split_layer_name(repeat_name(name, call)) == (name, call)
    assert split_layer_name("odd:name") == ("odd:name", 0)  # not a call number: a name
