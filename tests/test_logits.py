"""Class units: the network's output as the layer `logits`, rendered like any other layer,
and the `fooling` preset (Nguyen et al. 2015) on the real bundled model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app.cli import main
from app.core.jobs import run_job
from app.engine.analyses.featurevis import Renderer, render_units
from app.engine.runtime.models import load_bundled
from app.engine.runtime.recorder import discover_layers

TABBY = 281


@pytest.fixture(scope="module")
def loaded():
    return load_bundled(torch.device("cpu"))


def test_logits_is_the_last_layer_with_one_unit_per_class(loaded):
    layers, _ = discover_layers(loaded.module, loaded.preprocess.size, loaded.device)
    assert layers[-1].name == "logits" and layers[-1].shape == (1000, 1, 1)
    assert loaded.class_names[TABBY].startswith("tabby")


def test_a_class_unit_render_reports_the_probability_of_its_class(loaded):
    """Probabilities are softmax over the model's own logits of the finished images."""
    result = run_job(render_units(loaded, "logits", [TABBY, 950], "fast", steps=8, size=64))
    assert result.probabilities is not None and result.probabilities.shape == (2,)
    x = torch.from_numpy(result.images).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(loaded.preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.preprocess.std).view(1, 3, 1, 1)
    with torch.no_grad():
        probs = loaded.module((x - mean) / std).softmax(1)
    np.testing.assert_allclose(result.probabilities, probs[[0, 1], [TABBY, 950]].numpy(),
                               rtol=1e-4, atol=1e-6)
    # the activation of a class unit is its logit
    with torch.no_grad():
        logits = loaded.module((x - mean) / std)
    np.testing.assert_allclose(result.activations, logits[[0, 1], [TABBY, 950]].numpy(),
                               rtol=1e-3, atol=1e-3)
    other = run_job(render_units(loaded, "_blocks.4", [0], "fast", steps=2, size=32))
    assert other.probabilities is None  # only class units have a class


def test_fooling_images_get_near_certain_confidence_from_noise(loaded):
    """Plain pixels and no priors: a few dozen steps of ascent take the network from
    chance to being sure of the class (Nguyen et al. 2015)."""
    renderer = Renderer(loaded, "logits")
    noise = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3)).astype(np.uint8)
    before = float(renderer.class_probabilities(noise, [TABBY])[0])
    result = run_job(render_units(loaded, "logits", [TABBY], "fooling", steps=32))
    after = float(result.probabilities[0])
    print(f"fooling tabby: p = {before:.5f} on noise → {after:.4f} after 32 steps")
    assert before < 0.01 and after > 0.5


def test_render_command_on_class_units(capsys, tmp_path):
    code = main(["render", "--layer", "logits", "--units", str(TABBY), "--steps", "4",
                 "--size", "48", "--out", str(tmp_path), "--no-cache", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    row = json.loads(out)["units"][0]
    assert row["unit"] == TABBY and row["class"].startswith("tabby")
    assert 0.0 <= row["probability"] <= 1.0 and (tmp_path / row["file"]).is_file()
    code = main(["render", "--layer", "logits", "--units", "1000", "--steps", "2"])
    assert code == 2 and "1000" in capsys.readouterr().err
