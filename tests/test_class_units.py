"""Per-class unit importance (Bau et al. 2020) on a hand-weighted net: ranking and curves by
hand, the cache, and `deepvis ablate --class`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from app.core.jobs import run_job
from app.engine.analyses.ablation import AblationError, class_units, find_dataset
from app.engine.analyses.ablation.class_units import curve_counts
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import Preprocess

CLASSES = ("red", "green", "blue")


class ColourClassifier(nn.Module):
    """`conv` units: 0 = R, 1 = G, 2 = B, 3 = a constant 1. Logits: 2·unit k for class k,
    plus 0.2·unit 3 for green, so that with its colour unit deleted an image falls to green
    (and with every unit deleted all logits tie: argmax says red)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            w = torch.zeros(4, 3, 1, 1)
            for k in range(3):
                w[k, k] = 1.0
            self.conv.weight.copy_(w)
            self.conv.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))
            self.fc.weight.copy_(torch.tensor([[2.0, 0, 0, 0], [0, 2, 0, 0.2], [0, 0, 2, 0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


def loaded() -> LoadedModel:
    pre = Preprocess(size=8, crop_fraction=1.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return LoadedModel("colourclf", ColourClassifier().eval(), pre, CLASSES,
                       torch.device("cpu"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("classes")
    for k, name in enumerate(CLASSES):
        (root / name).mkdir()
        for i in range(2):
            img = np.zeros((8, 8, 3), np.uint8)
            img[..., 2 - k] = 255  # BGR on disk
            cv2.imwrite(str(root / name / f"{i}.png"), img)
    return root


def test_ranking_and_curves_by_hand(folder: Path, tmp_path: Path) -> None:
    m = loaded()
    ds = find_dataset(folder, m.class_names)
    res = run_job(class_units(m, ds, str(folder), "conv", 0, batch_size=4, max_pixels=10**6,
                              cache_dir=str(tmp_path)))
    # red images: logits (2, 0.2, 0). Deleting unit 0 → (0, 0.2, 0): green, a drop of 1.
    # Units 1 and 2 are 0 on red images: no change. Deleting unit 3 lowers green's logit:
    # red's probability rises (a negative drop), so it ranks last.
    assert res.drop == [1.0, 0.0, 0.0, 0.0]
    assert res.prob_drop[1] == res.prob_drop[2] == 0.0 and res.prob_drop[3] < 0
    assert res.ranking == [0, 1, 2, 3]
    assert res.intact == {"class": 1.0, "other": 1.0}
    assert res.counts == curve_counts(4) == [0, 1, 2, 4]
    # delete top n: 0 → all right; 1 (unit 0) → red lost; 2 (0, 1) → green images still
    # green through unit 3; 4 → all logits 0: everything "red"
    assert res.delete_top == {"class": [1.0, 0.0, 0.0, 1.0], "other": [1.0, 1.0, 1.0, 0.0]}
    # keep only top n: 0 → all deleted (all "red"); 1 (unit 0) → red right, green and blue
    # all 0 logits → "red"; 2 (units 0, 1) → green right again, blue not; 4 → intact
    assert res.keep_top == {"class": [1.0, 1.0, 1.0, 1.0], "other": [0.0, 0.0, 0.5, 1.0]}
    assert (res.class_images, res.other_images) == (2, 4)
    again = run_job(class_units(m, ds, str(folder), "conv", 0, batch_size=4, max_pixels=10**6,
                                cache_dir=str(tmp_path)))
    assert again.cached and again.ranking == res.ranking and again.keep_top == res.keep_top
    # the naive loop (whole network per level) agrees with the cut
    naive = run_job(class_units(m, ds, str(folder), "conv", 0, batch_size=4,
                                max_pixels=10**6, cache_dir=str(tmp_path), method="naive",
                                use_cache=False))
    assert naive.method == "naive" and naive.delete_top == res.delete_top


def test_unlabelled_folder_and_missing_class(folder: Path, tmp_path: Path) -> None:
    m = loaded()
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "x.png").write_bytes((folder / "red" / "0.png").read_bytes())
    with pytest.raises(AblationError, match="labelled folder"):
        run_job(class_units(m, find_dataset(flat, m.class_names), str(flat), "conv", 0,
                            batch_size=2, max_pixels=10**6, cache_dir=str(tmp_path)))
    only = tmp_path / "only"
    (only / "green").mkdir(parents=True)
    (only / "green" / "g.png").write_bytes((folder / "green" / "0.png").read_bytes())
    with pytest.raises(AblationError, match="no images of class 0"):
        run_job(class_units(m, find_dataset(only, m.class_names), str(only), "conv", 0,
                            batch_size=2, max_pixels=10**6, cache_dir=str(tmp_path)))


def test_cli_ablate_class(folder: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import app.cli as cli
    import app.cli.ablate as ablate_command

    monkeypatch.setattr(ablate_command, "load_for",
                        lambda args: (loaded(), ablate_command.settings_for(args)))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings = tmp_path / "s.toml"
    settings.write_text(f'[cache]\ndir = "{tmp_path / "cache"}"\n')
    base = ["ablate", str(folder), "--layer", "conv", "--settings", str(settings)]
    assert cli.main([*base, "--class", "red", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ranking"][0] == 0 and doc["class"] == {"index": 0, "name": "red"}
    assert doc["curves"]["keep_top"]["other"] == [0.0, 0.0, 0.5, 1.0]
    assert cli.main([*base, "--class", "2"]) == 0
    assert "units it needs most: 2" in capsys.readouterr().out
    assert cli.main([*base, "--class", "purple"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no class 'purple'" in err and "\n" not in err
