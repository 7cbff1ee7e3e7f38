"""Transformers: token and channels-last layers as maps, attention, timm, end to end.

Exact checks run on a tiny torchvision VisionTransformer (32 px, 8 px patches, 2 blocks) with
random weights; the end-to-end mechanics run the real architectures, ViT-B/16 and Swin-T,
loaded as `ARCH:STATE_DICT` from random-init state_dicts (no network anywhere).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from app.cli import main
from app.core.results import AttentionRecord
from app.core.settings import Settings
from app.core.view import ViewState
from app.engine.analyses.ablation.deletion import Ablation
from app.engine.runtime.attention import (
    AttentionError,
    AttentionProbe,
    attention_maps,
    rollout,
)
from app.engine.runtime.layout import NHWC, TOKENS, as_map, from_map, layout_of
from app.engine.runtime.models import ModelError, check_model_spec, load_model
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
from app.engine.runtime.receptive_field import receptive_field
from app.engine.runtime.recorder import ActivationRecorder, default_layer, discover_layers
from app.engine.runtime.truncate import forward_to
from app.engine.runtime.vit_any_size import any_size
from tests.photos import chelsea, write_jpeg

CPU = torch.device("cpu")
BLOCK = "encoder.layers.encoder_layer_0"


def _tiny_vit(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                            hidden_dim=16, mlp_dim=32, num_classes=10)
    nn.init.normal_(vit.heads.head.weight)  # torchvision starts the head at zero
    return any_size(vit).eval()


def _tokens_after_embedding(vit: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The encoder's input by hand: class token, then the 4×4 patch grid row-major."""
    patches = vit.conv_proj(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([vit.class_token.expand(x.shape[0], -1, -1), patches], 1)
    return tokens + vit.encoder.pos_embedding


# -- layouts -------------------------------------------------------------------------------

def test_layouts_are_told_from_shapes_and_the_module():
    assert layout_of(torch.zeros(1, 197, 768)).grid == (14, 14)
    assert layout_of(torch.zeros(1, 197, 768)).prefix == 1
    assert layout_of(torch.zeros(1, 201, 384)).prefix == 5  # class + 4 registers
    assert layout_of(torch.zeros(1, 196, 8)).prefix == 0
    assert layout_of(torch.zeros(1, 56, 56, 96)).kind == NHWC
    assert layout_of(torch.zeros(1, 96, 56, 56)).kind == "map"
    tie = torch.zeros(1, 7, 7, 7)  # C = H = W: a Linear's output is channels-last
    assert layout_of(tie, nn.Linear(3, 7)).kind == NHWC
    assert layout_of(tie, nn.Conv2d(3, 7, 1)).kind == "map"
    # MaxViT's windows (N, windows, tokens, C) on a square input: no map
    assert layout_of(torch.zeros(1, 64, 49, 64), nn.Linear(3, 64), (224, 224)) is None
    assert layout_of(torch.zeros(1, 8, 6, 4), nn.Conv2d(3, 8, 1), (48, 32)).kind == "map"
    assert layout_of(torch.zeros(1, 3, 768)) is None  # no grid
    assert layout_of((torch.zeros(1, 5, 4), None)) is None


def test_as_map_is_a_view_and_from_map_inverts_it():
    tokens = torch.randn(2, 1 + 9, 4)
    lay = layout_of(tokens)
    grid = as_map(tokens, lay)
    assert grid.shape == (2, 4, 3, 3) and grid.data_ptr() == tokens[:, 1:].data_ptr()
    assert torch.equal(grid[1, :, 2, 0], tokens[1, 1 + 2 * 3 + 0])
    assert torch.equal(as_map(tokens, lay, "cls")[:, :, 0, 0], tokens[:, 0])
    assert torch.equal(from_map(tokens, lay, grid.clone()), tokens)
    assert torch.equal(from_map(tokens, lay, as_map(tokens, lay, "cls").clone(), "cls"), tokens)
    nhwc = torch.randn(1, 5, 5, 3)
    lay = layout_of(nhwc)
    assert torch.equal(as_map(nhwc, lay)[0, 2], nhwc[0, ..., 2])
    assert torch.equal(from_map(nhwc, lay, as_map(nhwc, lay)), nhwc)


# -- recorder, forward_to, ablation, receptive fields on a tiny ViT ------------------------

def test_recorder_keeps_token_layers_as_grids_and_class_tokens_apart():
    vit, x = _tiny_vit(), torch.randn(1, 3, 32, 32)
    with torch.no_grad(), ActivationRecorder(vit) as rec:
        rec.run(x)
        infos = {i.name: i for i in rec.layer_infos()}
        block = rec.activations[BLOCK]
        tokens = vit.encoder.layers.encoder_layer_0(_tokens_after_embedding(vit, x))
    assert infos[BLOCK].shape == (16, 4, 4) and infos[BLOCK].layout == TOKENS
    assert infos[f"{BLOCK}:cls"].shape == (16, 1, 1) and infos[f"{BLOCK}:cls"].layout == "cls"
    assert infos["conv_proj"].layout == "map" and infos["logits"].shape == (10, 1, 1)
    torch.testing.assert_close(block[0, :, 1, 2], tokens[0, 1 + 1 * 4 + 2])
    torch.testing.assert_close(rec.activations[f"{BLOCK}:cls"][0, :, 0, 0], tokens[0, 0])
    layers, _ = discover_layers(vit, 32, CPU)
    assert default_layer(layers).startswith("encoder.layers.encoder_layer_")


def test_asking_for_the_class_tokens_alone_hooks_their_module():
    vit = _tiny_vit()
    with torch.no_grad(), ActivationRecorder(vit, [f"{BLOCK}:cls"]) as rec:
        rec.run(torch.randn(1, 3, 32, 32))
        assert rec.activations[f"{BLOCK}:cls"].shape == (1, 16, 1, 1)


def test_forward_to_gives_the_recorded_map_of_a_token_layer():
    vit, x = _tiny_vit(), torch.randn(2, 3, 32, 32)
    with torch.no_grad(), ActivationRecorder(vit) as rec:
        rec.run(x)
        want = {k: v.clone() for k, v in rec.activations.items()}
    for layer in (BLOCK, f"{BLOCK}:cls", f"{BLOCK}.mlp.0", "encoder.ln"):
        with torch.no_grad():
            torch.testing.assert_close(forward_to(vit, layer, x), want[layer])


def test_ablating_a_token_channel_zeroes_it_in_every_patch_token_not_the_class_token():
    vit, x = _tiny_vit(), torch.randn(1, 3, 32, 32)
    seen: list[torch.Tensor] = []
    block = vit.encoder.layers.encoder_layer_0
    handle = block.register_forward_hook(lambda _m, _i, out: seen.append(out.clone()))
    try:
        with torch.no_grad():
            intact = vit(x)
            with Ablation(vit, {BLOCK: [3]}):
                ablated = vit(x)
            with Ablation(vit, {f"{BLOCK}:cls": [3]}):
                vit(x)
    finally:
        handle.remove()
    assert not torch.allclose(intact, ablated)
    assert torch.all(seen[1][0, 1:, 3] == 0) and torch.equal(seen[1][0, 0], seen[0][0, 0])
    assert seen[2][0, 0, 3] == 0 and torch.equal(seen[2][0, 1:], seen[0][0, 1:])


def test_a_tokens_field_is_its_patch_before_attention_and_the_image_after():
    vit = _tiny_vit()
    embed = receptive_field(vit, "encoder.dropout", 32)
    assert embed.box(1, 2) == (8, 16, 16, 24) and "patch" in embed.note
    mixed = receptive_field(vit, BLOCK, 32)
    assert mixed.box(1, 2) == (0, 0, 32, 32) and "whole image" in mixed.note
    assert receptive_field(vit, f"{BLOCK}:cls", 32).box(0, 0) == (0, 0, 32, 32)


def test_the_vit_takes_other_square_sizes_and_is_torchvisions_at_its_own():
    vit = _tiny_vit()
    torch.manual_seed(0)
    plain = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                              hidden_dim=16, mlp_dim=32, num_classes=10).eval()
    plain.load_state_dict(vit.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vit(x), plain(x))
        assert vit(torch.randn(1, 3, 48, 48)).shape == (1, 10)
        assert forward_to(vit, BLOCK, torch.randn(1, 3, 48, 48)).shape == (1, 16, 6, 6)
    assert set(vit.state_dict()) == set(plain.state_dict())


# -- attention -----------------------------------------------------------------------------

def test_attention_weights_match_the_modules_own_computation():
    vit, x = _tiny_vit(), torch.randn(1, 3, 32, 32)
    maps = attention_maps(vit, x)
    assert maps.weights.shape == (2, 2, 17, 17) and maps.prefix == 1 and maps.grid == (4, 4)
    with torch.no_grad():
        tokens = _tokens_after_embedding(vit, x)
        for b, block in enumerate(vit.encoder.layers):
            y = block.ln_1(tokens)
            _, w = block.self_attention(y, y, y, need_weights=True, average_attn_weights=False)
            np.testing.assert_allclose(maps.weights[b], w[0].numpy(), atol=1e-6)
            tokens = block(tokens)
    cls = maps.for_query(1, "cls")
    assert cls.shape == (2, 4, 4)
    np.testing.assert_allclose(cls[1, 2, 3], maps.weights[1, 1, 0, 1 + 2 * 4 + 3])
    np.testing.assert_allclose(maps.for_query(0, (1, 2))[0].ravel(),
                               maps.weights[0, 0, 1 + 1 * 4 + 2, 1:])


def test_rollout_is_the_product_of_residual_averaged_attention():
    rng = np.random.default_rng(0)
    a = rng.random((3, 2, 5, 5)).astype(np.float32)
    a /= a.sum(-1, keepdims=True)
    want = np.eye(5)
    for layer in a:  # by hand: Â = (½ mean_h A + ½ I), rows to 1, applied on the left
        step = 0.5 * layer.mean(0) + 0.5 * np.eye(5)
        want = (step / step.sum(1, keepdims=True)) @ want
    np.testing.assert_allclose(rollout(a), want, rtol=1e-5)
    np.testing.assert_allclose(rollout(a).sum(1), 1.0, rtol=1e-5)
    vit = _tiny_vit()
    maps = attention_maps(vit, torch.randn(1, 3, 32, 32))
    np.testing.assert_allclose(maps.rollout("cls"), rollout(maps.weights)[0, 1:].reshape(4, 4))


def test_the_probe_rides_the_recorders_pass_and_takes_its_hooks_off():
    vit, x = _tiny_vit(), torch.randn(1, 3, 32, 32)
    with torch.no_grad(), ActivationRecorder(vit) as rec, AttentionProbe(vit) as probe:
        rec.run(torch.randn(1, 3, 32, 32))
        rec.run(x)  # the last pass is the one shown
    np.testing.assert_allclose(probe.maps().weights, attention_maps(vit, x).weights)
    assert all(not m._forward_pre_hooks for m in vit.modules())


def test_attention_of_a_convnet_is_a_clear_error():
    with pytest.raises(AttentionError, match="no global self-attention"):
        attention_maps(nn.Sequential(nn.Conv2d(3, 4, 3)), torch.zeros(1, 3, 8, 8))


# -- timm ----------------------------------------------------------------------------------

def test_without_timm_a_timm_model_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(ModelError, match=r"pip install deepvis-live\[timm\]"):
        check_model_spec("timm:vit_tiny_patch16_224")


def test_a_timm_vit_from_a_local_checkpoint(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=7)
    ckpt = tmp_path / "tiny.pth"
    torch.save({"state_dict": net.state_dict()}, ckpt)
    with pytest.raises(ModelError, match="not found"):
        check_model_spec(f"timm:vit_tiny_patch16_224:{tmp_path / 'nope.pth'}")
    with pytest.raises(ModelError, match="timm has no model"):
        check_model_spec("timm:no_such_net")
    loaded = load_model(f"timm:vit_tiny_patch16_224:{ckpt}", CPU, Settings().model)
    assert loaded.num_classes == 7 and loaded.name == "timm:vit_tiny_patch16_224:tiny.pth"
    assert loaded.preprocess.size == 224 and loaded.preprocess.mean == (0.5, 0.5, 0.5)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), net.eval()(x))
        assert loaded.module(torch.randn(1, 3, 64, 64)).shape == (1, 7)  # renders' sizes
    layers = {i.name: i for i in discover_layers(loaded.module, 224, CPU)[0]}
    assert layers["blocks.1"].shape == (192, 14, 14) and layers["blocks.1"].layout == TOKENS
    assert layers["blocks.1:cls"].shape == (192, 1, 1)
    assert layers["patch_embed.proj"].layout == "map"
    maps = attention_maps(loaded.module, x)
    assert maps.weights.shape == (12, 3, 197, 197)
    np.testing.assert_allclose(maps.weights.sum(-1), 1.0, rtol=1e-5)


def test_a_timm_model_with_downloads_off_is_one_clear_line():
    pytest.importorskip("timm")
    settings = Settings().model.__class__(**{**Settings().model.__dict__,
                                             "allow_download": False})
    with pytest.raises(ModelError, match="downloads are off") as err:
        load_model("timm:vit_tiny_patch16_224", CPU, settings)
    assert "\n" not in str(err.value)


# -- the real architectures, end to end ------------------------------------------------------

def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def vit_b_16(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vit") / "vit_b_16.pth"
    net = torchvision.models.vit_b_16(weights=None)
    nn.init.normal_(net.heads.head.weight, std=0.02)  # zero at init: no class would differ
    torch.save(net.state_dict(), path)
    return f"vit_b_16:{path}"


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    return write_jpeg(d / "cat.jpg", chelsea())


@pytest.fixture()
def settings(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(f"[cache]\ndir = \"{tmp_path / 'cache'}\"\n")
    return str(path)


VIT_BLOCK = "encoder.layers.encoder_layer_3"


@pytest.mark.slow
def test_vit_b_16_lists_predicts_scans_renders_and_explains(capsys, vit_b_16, photo,
                                                            settings):
    common = ("--model", vit_b_16, "--device", "cpu", "--settings", settings)
    code, out, err = _run(capsys, "layers", *common, "--json")
    assert code == 0, err
    layers = {i["name"]: i for i in json.loads(out)["layers"]}
    assert layers[VIT_BLOCK]["shape"] == [768, 14, 14]
    assert layers[VIT_BLOCK]["layout"] == "tokens"
    assert layers[VIT_BLOCK]["layout_text"] == "tokens 14×14×768"
    assert layers[f"{VIT_BLOCK}:cls"]["shape"] == [768, 1, 1]
    assert layers["conv_proj"]["layout"] == "map"

    code, out, err = _run(capsys, "predict", str(photo), *common, "--json",
                          "--ablate", f"{VIT_BLOCK}:0-99")
    assert code == 0, err
    assert len(json.loads(out)["results"][0]["top"]) == 5

    code, out, err = _run(capsys, "scan", str(photo.parent), *common, "--json",
                          "--layers", VIT_BLOCK, f"{VIT_BLOCK}:cls", "--top-k", "1")
    assert code == 0, err
    scanned = {layer["name"]: layer for layer in json.loads(out)["layers"]}
    assert scanned[VIT_BLOCK]["map_shape"] == [14, 14]
    assert scanned[VIT_BLOCK]["receptive_field"]["size"] == [224, 224]  # mixed: whole image
    assert "whole image" in scanned[VIT_BLOCK]["receptive_field"]["note"]
    assert scanned[f"{VIT_BLOCK}:cls"]["units"] == 768

    code, out, err = _run(capsys, "render", "--layer", "encoder.layers.encoder_layer_1",
                          "--units", "5", "--steps", "2", "--size", "32", *common, "--json")
    assert code == 0, err
    assert np.isfinite(json.loads(out)["units"][0]["activation"])

    code, out, err = _run(capsys, "explain", str(photo), "--layer", VIT_BLOCK, "--groups",
                          "2", "--seeds", "1", *common, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["shape"] == [768, 14, 14]
    spatial = np.array(doc["results"][0]["spatial"])
    assert spatial.shape == (14, 14) and np.abs(spatial).max() > 0
    assert len(doc["results"][0]["channels"]) == 768


@pytest.mark.slow
def test_vit_b_16_live_frame_shows_a_token_grid(vit_b_16):
    from app.engine.live.worker import FrameProcessor

    loaded = load_model(vit_b_16, CPU, Settings().model)
    proc = FrameProcessor(loaded)
    try:
        snap = proc.process(chelsea(), ViewState(layer=VIT_BLOCK, unit=7))
        g = snap.geometry
        assert (g.channels, g.tile_h, g.tile_w) == (768, 14, 14)
        assert snap.mosaic.shape == (g.height, g.width) and snap.unit_map.shape == (14, 14)
        # the unit's map is channel 7 of the block's 196 patch tokens, row-major
        block = loaded.module.get_submodule(VIT_BLOCK)
        raw: list[torch.Tensor] = []
        handle = block.register_forward_hook(lambda _m, _i, out: raw.append(out))
        try:
            with torch.no_grad():
                loaded.module(prepare_batch([frame_to_tensor(chelsea(), CPU)],
                                            loaded.preprocess))
        finally:
            handle.remove()
        np.testing.assert_allclose(snap.unit_map, raw[0][0, 1:, 7].reshape(14, 14).numpy(),
                                   rtol=1e-5, atol=1e-5)
        cls = proc.process(chelsea(), ViewState(layer=f"{VIT_BLOCK}:cls", unit=7))
        assert (cls.geometry.tile_h, cls.geometry.tile_w) == (1, 1)
        x = torch.zeros(1, 3, 224, 224)
        maps = attention_maps(proc.loaded.module, x)  # no recorder pass is running now
        assert maps.for_query(11, "cls").shape == (12, 14, 14)
    finally:
        proc.close()


@pytest.mark.slow
def test_swin_t_channels_last_layers_are_maps_end_to_end(capsys, tmp_path, photo, settings):
    import torchvision

    from app.engine.live.worker import FrameProcessor

    torch.manual_seed(0)
    path = tmp_path / "swin_t.pth"
    torch.save(torchvision.models.swin_t(weights=None).state_dict(), path)
    spec = f"swin_t:{path}"
    code, out, err = _run(capsys, "layers", "--model", spec, "--device", "cpu", "--json")
    assert code == 0, err
    layers = {i["name"]: i for i in json.loads(out)["layers"]}
    assert layers["features.1"]["shape"] == [96, 56, 56]
    assert layers["features.1"]["layout"] == "nhwc"
    assert layers["features.0.0"]["layout"] == "map"  # the patch embedding's conv
    code, out, err = _run(capsys, "predict", str(photo), "--model", spec, "--device", "cpu",
                          "--json", "--ablate", "features.3:0-9", "--settings", settings)
    assert code == 0, err
    proc = FrameProcessor(load_model(spec, CPU, Settings().model))
    try:
        snap = proc.process(chelsea(), ViewState(layer="features.5", unit=3))
        assert (snap.geometry.channels, snap.geometry.tile_h) == (384, 14)
    finally:
        proc.close()
    with pytest.raises(AttentionError):
        attention_maps(proc.loaded.module, torch.zeros(1, 3, 224, 224))


@pytest.mark.slow
def test_maxvit_records_no_windowed_tensor(tmp_path):
    import torchvision

    torch.manual_seed(0)
    path = tmp_path / "maxvit_t.pth"
    torch.save(torchvision.models.maxvit_t(weights=None).state_dict(), path)
    loaded = load_model(f"maxvit_t:{path}", CPU, Settings().model)
    assert loaded.preprocess.size == 224
    infos, _ = discover_layers(loaded.module, 224, CPU)
    window = "blocks.0.layers.0.layers.window_attention"
    names = {i.name: i for i in infos}
    assert f"{window}.attn_layer.1" not in names  # (windows, tokens, C): no map
    assert names[window].shape == (64, 56, 56)


@pytest.mark.slow
def test_the_real_window_shows_a_vits_token_grid_and_its_attention(qtbot, vit_b_16, tmp_path):
    """The window on a ViT (random weights, offline): token layers listed as such, a block's
    768 channels tiled as 14×14 maps, and t tints the input by the block's attention."""
    from gui_driver import WindowDriver
    from PyQt6.QtCore import Qt

    from app.core.settings import GuiSettings
    from app.session.live import LiveSession

    cat = write_jpeg(tmp_path / "cat.jpg", chelsea())
    session = LiveSession(Settings(), CPU)
    ui = WindowDriver.open(qtbot, session, Settings(gui=GuiSettings(width=1366, height=740)),
                           initial_layer=VIT_BLOCK)
    try:
        session.load_model(vit_b_16)
        session.open_source(str(cat))
        ui.wait_until(lambda: ui.results_shown() > 0 and ui.last_result().layer == VIT_BLOCK,
                      timeout=120_000)
        g = ui.last_result().geometry
        assert (g.channels, g.tile_h, g.tile_w) == (768, 14, 14)
        assert any(row.startswith(f"{VIT_BLOCK}  768×14×14  tokens") for row in ui.layer_rows())
        ui.press(Qt.Key.Key_T)
        ui.wait_until(lambda: ui.attention_overlay() is not None, timeout=120_000)
        overlay = ui.attention_overlay()
        assert overlay is not None and overlay.shape[:2] == (14, 14)
        assert "block 4 of 12" in ui.last_result().record(AttentionRecord).text
    finally:
        ui.shutdown()
