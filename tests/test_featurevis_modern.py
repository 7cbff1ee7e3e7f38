"""Modern preferred images: MACO, transparency, feature accentuation, inversion, diversity.

Exact properties on tiny nets first (the magnitude spectrum every step, the transparency as the
accumulated |gradient|), then the bundled model on a real photo, then the commands.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from photos import ASSETS, chelsea, write_jpeg
from torch import nn

from app.core.jobs import run_job
from app.engine.analyses.featurevis import objectives as obj
from app.engine.analyses.featurevis.frames import accentuate, invert, psnr
from app.engine.analyses.featurevis.param import (
    FourierImage,
    MacoImage,
    fourier_from_image,
    unit_rms_magnitude,
)
from app.engine.analyses.featurevis.presets import PRESETS, get_preset
from app.engine.analyses.featurevis.render import Ascent, Renderer, render_units
from app.engine.analyses.featurevis.spectrum import (
    DEFAULT_SIZE,
    SpectrumError,
    bundled_spectrum,
    dataset_spectrum,
    image_spectrum,
    load_spectrum,
    magnitude_at,
)
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import Preprocess

CPU = torch.device("cpu")


def rngs(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


class Conv(nn.Module):
    """Two random conv layers: `b` is the target; its maps depend on texture and colour."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.b = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)).mean((2, 3))


def loaded_of(net: nn.Module, size: int) -> LoadedModel:
    pre = Preprocess(size, 1.0, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    return LoadedModel("tiny", net.eval(), pre, tuple(f"c{i}" for i in range(6)), CPU)


def photo(size: int = 64) -> np.ndarray:
    """A real photo (skimage's cat) as an RGB uint8 frame."""
    import cv2

    return cv2.resize(chelsea(), (size, size), interpolation=cv2.INTER_AREA)


# -- MACO ---------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [32, 33])
def test_maco_keeps_the_magnitude_spectrum_every_step(side):
    renderer = Renderer(loaded_of(Conv(), side), "b", CPU)
    preset = get_preset("maco").with_overrides(steps=6, size=side)
    preset = dataclasses.replace(preset, crop_size=side, preview_every=1)
    g = rngs(0, 1)
    param = renderer.make_param(preset, g)
    assert isinstance(param, MacoImage)
    stored = magnitude_at(bundled_spectrum(), side, side)
    # the parametrization's normalisation: mean (DC) zeroed, one scale for the rest
    ratio = param.magnitude[:, 1:, 1:] / stored[:, 1:, 1:]
    assert float(param.magnitude[:, 0, 0].abs().max()) == 0.0
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-4)
    goal = obj.crop_mean(obj.channel([0] * 4 + [1] * 4), 4)
    ascent = Ascent(renderer, param, goal, preset, g)
    phases = []
    for _step, _imgs, _ in ascent.run():
        with torch.no_grad():
            got = torch.fft.rfft2(param.raw(), norm="ortho").abs()
        # |FFT| of the image before colour and sigmoid is the fixed magnitude, exactly
        assert torch.allclose(got, param.magnitude.expand_as(got), atol=1e-4 * float(got.max()))
        phases.append(param.phase.detach().clone())
    assert not torch.allclose(phases[0], phases[-1])  # the phase did move


def test_magnitude_resampling_is_symmetric_where_rfft_needs_it():
    m = magnitude_at(bundled_spectrum(), 40, 40)
    neg = (-torch.arange(40)) % 40
    for col in (0, 20):
        assert torch.allclose(m[:, :, col], m[:, neg, col])
    assert m.shape == (3, 40, 21) and float(m.min()) >= 0
    norm = unit_rms_magnitude(m, 40, 40)
    p = MacoImage(rngs(5), 40, 40, CPU, m)
    assert torch.allclose(p.magnitude, norm)
    assert float(p.raw().detach().square().mean()) == pytest.approx(1.0, rel=1e-4)


def test_transparency_is_the_accumulated_absolute_gradient():
    side = 24
    loaded = loaded_of(Conv(), side)
    renderer = Renderer(loaded, "b", CPU)
    # no random transform, so a hand-written loop can repeat the run exactly
    preset = dataclasses.replace(get_preset("maco").with_overrides(steps=5, size=side),
                                 crops=0, transforms=0.0, transparency=True, noise=0.0)
    goal = obj.channel([0, 1])
    ascent = Ascent(renderer, renderer.make_param(preset, rngs(0, 1)), goal, preset, rngs(0, 1))
    list(ascent.run())
    alpha = ascent.alpha()

    param = renderer.make_param(preset, rngs(0, 1))
    opt = torch.optim.NAdam(param.params, lr=preset.lr)
    total = torch.zeros(2, side, side)
    for _ in range(preset.steps):
        image = param()
        image.retain_grad()
        score = goal(renderer.forward(image), image)
        opt.zero_grad()
        (-score.sum()).backward()
        total += image.grad.abs().sum(1)
        opt.step()
    assert float(total.flatten(1).amax(1).min()) > 0  # both units get gradients
    want = (total / total.flatten(1).amax(1).view(-1, 1, 1)).numpy()
    assert alpha.shape == (2, side, side) and alpha.min() >= 0
    np.testing.assert_allclose(alpha, want, rtol=1e-4, atol=1e-6)

    # through the job: one map per image, the image's shape, cached with it
    result = run_job(render_units(loaded, "b", [0, 3], get_preset("maco").with_overrides(
        steps=4, size=side)))
    assert result.alphas is not None and result.alphas.shape == result.images.shape[:3]
    assert result.alphas.min() >= 0 and np.allclose(result.alphas.max((1, 2)), 1.0)


def test_maco_render_is_cached_with_its_alpha_and_spectrum(tmp_path):
    side = 24
    loaded = loaded_of(Conv(), side)
    preset = get_preset("maco").with_overrides(steps=3, size=side)
    first = run_job(render_units(loaded, "b", [1], preset, cache_root=tmp_path))
    again = run_job(render_units(loaded, "b", [1], preset, cache_root=tmp_path))
    assert again.cached == (True,) and np.array_equal(again.images, first.images)
    assert again.alphas is not None and np.abs(again.alphas - first.alphas).max() <= 0.5 / 255
    other = image_spectrum([photo(64)], 32)  # another spectrum is another render
    third = run_job(render_units(loaded, "b", [1], preset, cache_root=tmp_path,
                                 spectrum=other))
    assert third.cached == (False,)


def test_shipped_spectrum_is_reproducible_from_the_bundled_photos():
    from app.capture.images import read_image

    shipped = bundled_spectrum()
    photos = sorted((ASSETS / "samples").glob("*.jpg"))
    again = image_spectrum((read_image(p) for p in photos), DEFAULT_SIZE)
    assert shipped.images == len(photos) == again.images
    assert shipped.magnitude.shape == (3, DEFAULT_SIZE, DEFAULT_SIZE // 2 + 1)
    # stored as float16: three significant digits
    np.testing.assert_allclose(shipped.magnitude, again.magnitude, rtol=2e-3,
                               atol=1e-3 * float(again.magnitude.max()))


def test_dataset_spectrum_is_cached_by_its_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_jpeg(data / "a.jpg", photo(80))
    write_jpeg(data / "b.jpg", photo(48)[:, ::-1].copy())
    cache = tmp_path / "cache"
    first = run_job(dataset_spectrum(data, 32, cache))
    second = run_job(dataset_spectrum(data, 32, cache))
    assert not first.cached and second.cached and first.path == second.path
    assert first.spectrum.images == 2 and first.path.is_file()
    np.testing.assert_array_equal(first.spectrum.magnitude, second.spectrum.magnitude)
    assert load_spectrum(first.path).digest() == first.spectrum.digest()
    bad = tmp_path / "bad.npz"
    np.savez(bad, magnitude=np.ones((3, 4, 4)), images=1, size=4, format=1)
    with pytest.raises(SpectrumError, match="rfft2"):
        load_spectrum(bad)
    with pytest.raises(SpectrumError, match="no images"):
        next(dataset_spectrum(tmp_path / "cache" / "spectrum" / "x", 32, cache))


def test_maco_preset_is_a_render_preset():
    from app.core.settings import RENDER_PRESETS

    assert "maco" in PRESETS and "maco" in RENDER_PRESETS
    assert PRESETS["maco"].param == "maco" and PRESETS["maco"].transparency


# -- accentuation, inversion, diversity on tiny nets ----------------------------------------


def test_accentuation_raises_the_unit_and_stays_close_on_a_tiny_net():
    side = 32
    loaded = loaded_of(Conv(), side)
    frame = photo(side)
    x = torch.from_numpy(frame[None]).permute(0, 3, 1, 2).float() / 255
    acts = Renderer(loaded, "b", CPU).measure(x.expand(6, -1, -1, -1), list(range(6)))
    unit = int(np.argsort(acts)[3])  # a unit the photo drives, not the strongest
    assert acts[unit] > 0
    result = run_job(accentuate(loaded, frame, "b", unit, steps=24, size=side))
    assert result.activation_after > 1.2 * result.activation_before
    assert result.image.shape == result.seed.shape == (side, side, 3)
    # the L2 pull keeps it near the photo; a pull of zero wanders further
    far = run_job(accentuate(loaded, frame, "b", unit, steps=24, size=side, pull=0.0))
    assert result.psnr > 20.0 and result.psnr > far.psnr
    assert result.psnr == pytest.approx(psnr(result.image, result.seed))


def test_a_warm_start_keeps_a_gradient_at_black_and_white_pixels():
    side = 16
    gray = torch.full((1, 3, side, side), 0.5)
    black_white = (torch.arange(side * side).reshape(1, 1, side, side) % 2).float()
    black_white = black_white.expand(1, 3, -1, -1)

    def gradient_norm(image: torch.Tensor) -> float:
        param = FourierImage(rngs(0), side, side, CPU, decay_power=1.5)
        with torch.no_grad():
            param.spectrum.copy_(fourier_from_image(image, True, 1.5))
        param().sum().backward()
        assert param.spectrum.grad is not None
        return float(param.spectrum.grad.norm())

    # the sigmoid's slope is 0.25 at mid-gray; at the old 1e-4 clamp it was 1e-4 (a ratio
    # of 0.0004), and no step could move a pixel that sat there
    assert gradient_norm(black_white) > 0.05 * gradient_norm(gray)


def test_inversion_drives_the_code_error_down_on_a_tiny_net():
    side = 32
    loaded = loaded_of(Conv(), side)
    seen: list = []
    result = run_job(invert(loaded, photo(side), ["a", "b"], steps=48, size=side), seen.append)
    assert [r.layer for r in result.layers] == ["a", "b"]
    for r in result.layers:
        assert r.code_error < 0.5 * r.start_error, r
    errors = [p.value for p in seen if p.layer == "a" and p.value is not None]
    assert errors[-1] < errors[0]
    assert seen[-1].done == seen[-1].total == 96


def _gram_similarity(renderer: Renderer, images: np.ndarray) -> float:
    """Mean pairwise cosine similarity of the images' Gram matrices at the target layer."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        return -float(obj.diversity()(renderer.forward(x), x).mean())


def test_diversity_renders_differ_more_than_renders_without_it():
    side = 32
    loaded = loaded_of(Conv(), side)
    preset = get_preset("fast").with_overrides(steps=32, size=side)
    plain = run_job(render_units(loaded, "b", [3, 3, 3], preset, seed=1))
    diverse = run_job(render_units(loaded, "b", [3], preset, seed=1, diversity=3))
    assert diverse.units == (3, 3, 3) and diverse.images.shape == plain.images.shape
    renderer = Renderer(loaded, "b", CPU)
    assert _gram_similarity(renderer, diverse.images) < _gram_similarity(renderer, plain.images)
    with pytest.raises(ValueError, match="diversity"):
        next(render_units(loaded, "b", [3], preset, diversity=0))


def test_diversity_renders_are_cached_whole_and_do_not_depend_on_the_batch(tmp_path):
    side = 32
    loaded = loaded_of(Conv(), side)
    preset = get_preset("fast").with_overrides(steps=16, size=side)
    alone = run_job(render_units(loaded, "b", [3], preset, seed=1, diversity=2))
    # beside another unit: the diversity term's scale is each unit's own
    together = run_job(render_units(loaded, "b", [5, 3], preset, seed=1, diversity=2))
    assert together.units == (5, 5, 3, 3)
    assert np.abs(together.images[2:].astype(int) - alone.images.astype(int)).max() <= 2
    first = run_job(render_units(loaded, "b", [3], preset, seed=1, diversity=2,
                                 cache_root=tmp_path))
    assert first.cached == (False, False)
    again = run_job(render_units(loaded, "b", [3], preset, seed=1, diversity=2,
                                 cache_root=tmp_path))
    assert again.cached == (True, True) and np.array_equal(again.images, first.images)
    # a render of one image per unit is not served from a diversity render's images
    single = run_job(render_units(loaded, "b", [3], preset, seed=1, cache_root=tmp_path))
    assert single.cached == (False,)
    # with one of the two images gone, both are made again (they were optimized together)
    one = sorted(p for p in tmp_path.rglob("unit00003.json") if "-div2.1" in str(p))
    assert len(one) == 1
    one[0].unlink()
    redone = run_job(render_units(loaded, "b", [3], preset, seed=1, diversity=2,
                                  cache_root=tmp_path))
    assert redone.cached == (False, False)
    assert np.abs(redone.images.astype(int) - first.images.astype(int)).max() <= 2


# -- the bundled model on a real photo ------------------------------------------------------


@pytest.fixture(scope="module")
def bundled():
    from app.engine.runtime.models import load_bundled

    return load_bundled(CPU)


def horse() -> np.ndarray:
    """scikit-image's black-and-white silhouette as RGB: every pixel is 0 or 255."""
    from skimage import data

    return np.repeat(data.horse()[..., None], 3, axis=2).astype(np.uint8) * 255


@pytest.mark.slow
@pytest.mark.parametrize("image", [chelsea, horse], ids=["photo", "saturated"])
def test_accentuating_a_middle_unit_doubles_it_and_keeps_the_image(bundled, image):
    frame = image()
    if image is horse:  # where the sigmoid of the parametrization is flat
        assert set(np.unique(frame).tolist()) == {0, 255}
    result = run_job(accentuate(bundled, frame, "_blocks.8", 5, steps=32))
    assert result.activation_before > 0
    # "at least double" is the bar; a photo goes ~13×, and so should a silhouette (it went
    # 2.4× while its pixels sat where the parametrization had no gradient)
    assert result.activation_after >= 4 * result.activation_before, result
    assert result.psnr >= 20.0, result.psnr


@pytest.mark.slow
def test_inverting_a_shallow_layer_of_a_photo(bundled):
    result = run_job(invert(bundled, chelsea(), ["_blocks.2"], steps=48, size=112))
    (inv,) = result.layers
    assert inv.code_error < 0.5 < inv.start_error, inv
    # recognizably the scene: far closer to the photo than the gray start is
    gray = np.full_like(result.seed, 128)
    assert psnr(inv.image, result.seed) > psnr(gray, result.seed) + 3


# -- commands -------------------------------------------------------------------------------


@pytest.fixture()
def settings_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(f"[cache]\ndir = '{tmp_path / 'cache'}'\n")
    return path


@pytest.mark.slow
def test_frame_commands_json_and_files(tmp_path, capsys, settings_file):
    from app.cli import main

    image = write_jpeg(tmp_path / "cat.jpg", photo(96))
    common = ["--steps", "3", "--size", "48", "--settings", str(settings_file), "--json"]
    out = tmp_path / "acc.png"
    assert main(["accentuate", str(image), "--layer", "_blocks.4", "--unit", "2",
                 "--out", str(out), *common]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"activation_before", "activation_after", "psnr", "file", "layer", "unit"} <= set(doc)
    assert doc["file"] == str(out) and out.is_file() and doc["size"] == 48

    assert main(["invert", str(image), "--layer", "_blocks.2", *common]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"code_error", "layers", "file"} <= set(doc)
    assert doc["layers"][0]["layer"] == "_blocks.2" and doc["code_error"] >= 0

    photos = tmp_path / "photos"
    photos.mkdir()
    write_jpeg(photos / "one.jpg", photo(64))
    assert main(["spectrum", str(photos), "--size", "32", "--settings", str(settings_file),
                 "--json", "--out", str(tmp_path / "sp.npz")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["images"] == 1 and doc["cached"] is False and doc["size"] == 32
    assert load_spectrum(tmp_path / "sp.npz").size == 32

    assert main(["render", "--layer", "_blocks.4", "--units", "1", "--diversity", "2",
                 "--preset", "maco", "--spectrum", str(tmp_path / "sp.npz"), "--out",
                 str(tmp_path / "div"), *common]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["unit"], r["index"]) for r in doc["images"]] == [(1, 0), (1, 1)]
    assert doc["diversity"] == 2 and "1" in doc["mean_pixel_distance"]


@pytest.mark.slow
def test_frame_commands_exit_2_on_bad_input(tmp_path, capsys, settings_file):
    from app.cli import main

    image = write_jpeg(tmp_path / "cat.jpg", photo(64))
    s = ["--settings", str(settings_file)]
    cases = [
        (["accentuate", str(tmp_path / "none.jpg"), "--layer", "_blocks.4", "--unit", "1"],
         "no such file"),
        (["accentuate", str(image), "--layer", "nope", "--unit", "1"], "no recordable layer"),
        (["accentuate", str(image), "--layer", "_blocks.4", "--unit", "999"], "out of range"),
        (["accentuate", str(image), "--layer", "_blocks.4", "--unit", "1", "--steps", "0"],
         "--steps"),
        (["invert", str(image), "--layer", "_blocks.4", "--out", "x.jpg"], ".png"),
        (["invert", str(image)], "--layer"),
        (["spectrum", str(tmp_path / "none")], "not a folder"),
        (["render", "--layer", "_blocks.4", "--units", "1", "--diversity", "0"], "--diversity"),
        (["render", "--layer", "_blocks.4", "--units", "1", "--preset", "maco",
          "--spectrum", str(image)], "not a spectrum"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            rc = main([*argv, *s])
            raise SystemExit(rc)
        assert exit_info.value.code == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)
