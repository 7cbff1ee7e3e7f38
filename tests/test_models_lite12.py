"""EfficientNet-Lite1 and Lite2, bundled offline next to Lite0: layout, sizes, real photos.

The photos go through the app's own path (`load_model` by name, `prepare_batch` with the
model's preprocessing), as a user's frames do.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from app.core.settings import Settings
from app.engine.runtime.efficientnet_lite import VARIANTS, EfficientNetLite0, scaled_block_specs
from app.engine.runtime.models import LoadedModel, load_model, model_choices
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
from tests.photos import ASSETS, CAT_CLASSES, COFFEE_CLASSES

CPU = torch.device("cpu")
DRESS_CLASSES = {652, 834, 906}  # military uniform, suit, Windsor tie
ROCKET_CLASSES = {657, 744, 812}  # missile, projectile, space shuttle
NETS = ("efficientnet_lite1", "efficientnet_lite2")


def _photo(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(ASSETS / "samples" / f"{name}.jpg")), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module", params=NETS)
def loaded(request) -> LoadedModel:
    return load_model(request.param, CPU, Settings().model)


def _probabilities(loaded: LoadedModel, *names: str) -> torch.Tensor:
    x = prepare_batch([frame_to_tensor(_photo(n), CPU) for n in names], loaded.preprocess)
    with torch.no_grad():
        return loaded.module(x).softmax(1)


def test_scaled_layouts_match_tensorflows_lite_builder():
    lite1, lite2 = (scaled_block_specs(VARIANTS[n].width, VARIANTS[n].depth) for n in NETS)
    assert len(lite1) == len(lite2) == 21  # the first and last stages keep one block
    assert [s.out_channels for s in lite2][-2:] == [208, 352]
    assert (VARIANTS["efficientnet_lite1"].size, VARIANTS["efficientnet_lite2"].size) == (240,
                                                                                          260)
    assert len(EfficientNetLite0()._blocks) == 16  # Lite0 unchanged


def test_lite1_and_lite2_are_listed_as_offline():
    offline = {c.name for c in model_choices() if c.offline}
    assert {"efficientnet_lite0", *NETS} <= offline


@pytest.mark.slow
def test_weights_load_with_their_own_input_size_and_crop(loaded):
    v = VARIANTS[loaded.name]
    assert loaded.preprocess.size == v.size
    assert loaded.preprocess.crop_fraction == pytest.approx(v.size / (v.size + 32))
    assert loaded.num_classes == 1000 and loaded.weights_file is not None
    assert not loaded.module.training


@pytest.mark.slow
def test_the_sample_photos_are_classified_correctly(loaded):
    cat, cup, hopper, rocket = _probabilities(loaded, "chelsea", "coffee", "grace_hopper",
                                              "rocket")
    assert int(cat.argmax()) in CAT_CLASSES
    assert float(cat[sorted(CAT_CLASSES)].sum()) > 0.6
    assert int(cup.argmax()) in COFFEE_CLASSES and loaded.class_names[int(cup.argmax())] \
        == "espresso"
    assert set(hopper.topk(5).indices.tolist()) & DRESS_CLASSES
    assert set(rocket.topk(5).indices.tolist()) & ROCKET_CLASSES
