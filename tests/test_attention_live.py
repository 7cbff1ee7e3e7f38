"""A transformer's attention in the live pass: the probe rides on the recorded forward."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.vision_transformer import VisionTransformer

from app.core.results import AttentionRecord
from app.core.view import AttentionView, ViewState
from app.engine.live.stages.attention import block_of
from app.engine.live.worker import FrameProcessor
from app.engine.runtime.attention import attention_maps, attention_modules
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import Preprocess, frame_to_tensor, prepare_batch
from app.engine.runtime.recorder import discover_layers

LAYER = "encoder.layers.encoder_layer_1"


def attention(snap) -> AttentionRecord:
    rec = snap.record(AttentionRecord)
    assert rec is not None  # there whenever attention is asked for
    return rec


def _tiny_vit() -> LoadedModel:
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                            hidden_dim=16, mlp_dim=32, num_classes=5).eval()
    pre = Preprocess(size=32, crop_fraction=1.0, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return LoadedModel("tiny_vit", vit, pre, tuple(f"c{i}" for i in range(5)),
                       torch.device("cpu"))


def test_the_live_attention_is_the_blocks_own_weights_for_the_query():
    loaded = _tiny_vit()
    image = np.random.default_rng(1).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    proc = FrameProcessor(loaded)
    try:
        x = prepare_batch([frame_to_tensor(image, loaded.device)], loaded.preprocess)
        maps = attention_maps(loaded.module, x)
        def shown(layer: str = LAYER, **asked) -> AttentionRecord:
            return attention(proc.process(image, ViewState(
                layer=layer, parts=(AttentionView(True, **asked),))))

        snap = shown()
        np.testing.assert_allclose(snap.weights, maps.for_query(1, "cls").mean(0),
                                   rtol=1e-4, atol=1e-6)
        assert "block 2 of 3" in snap.text and "class token" in snap.text
        np.testing.assert_allclose(shown(query=(2, 1)).weights,
                                   maps.for_query(1, (2, 1)).mean(0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(shown(rollout=True).weights, maps.rollout("cls", upto=1),
                                   rtol=1e-4, atol=1e-6)
        assert proc.process(image, ViewState(layer=LAYER)).record(AttentionRecord) is None
        inner = shown(f"{LAYER}.ln_2")  # inside the block: its attention, not the last one's
        np.testing.assert_allclose(inner.weights, maps.for_query(1, "cls").mean(0),
                                   rtol=1e-4, atol=1e-6)
        assert "block 2 of 3" in inner.text
        assert "block 3 of 3" in shown("encoder").text  # a container of all: the last block
    finally:
        proc.close()


@pytest.mark.slow
def test_every_recordable_layer_of_a_vit_b_16_shows_its_own_blocks_attention():
    """Every layer inside block k (ln_1, ln_2, mlp, mlp.3, ..., and each `NAME:cls`) shows
    block k; the containers of all blocks (`encoder`, `encoder.layers`) and the layers
    outside any block show the last one, which is what their output has been through."""
    torch.manual_seed(0)
    vit = torchvision.models.vit_b_16(weights=None).eval()
    layers, _ = discover_layers(vit, 224, torch.device("cpu"))
    blocks = tuple(name for name, _ in attention_modules(vit))
    assert len(blocks) == 12
    inside: dict[int, list[str]] = {k: [] for k in range(12)}
    for info in layers:
        found = re.fullmatch(r"encoder\.layers\.encoder_layer_(\d+)([.:].*)?", info.name)
        expected = int(found.group(1)) if found else 11
        if found:
            inside[expected].append(info.name)
        assert block_of(info.name, blocks) == expected, info.name
    for k, names in inside.items():
        block = f"encoder.layers.encoder_layer_{k}"
        for part in ("", ".ln_1", ".ln_2", ".mlp", ".mlp.0", ".mlp.3", ".dropout"):
            assert f"{block}{part}" in names and f"{block}{part}:cls" in names
    assert {"encoder", "encoder.layers", "encoder:cls", "conv_proj"} <= {i.name for i in layers}


def test_a_cnn_says_it_has_no_attention_once():
    from app.engine.runtime.models import load_bundled
    from tests.photos import chelsea

    proc = FrameProcessor(load_bundled(torch.device("cpu")))
    try:
        rec = attention(proc.process(chelsea(), ViewState(parts=(AttentionView(True),))))
        assert rec.weights is None and rec.text.startswith("no attention to show")
    finally:
        proc.close()
