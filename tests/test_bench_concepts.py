"""`deepvis bench --layer`: the live pipeline measured with a chosen layer shown, a concept
layer from the cache included (what its codes cost is then the difference of two runs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from app.cli import main

SOURCE = "_blocks.8"  # 112 × 14 × 14 in the bundled model


def settings_with_dictionary(tmp_path: Path) -> tuple[str, str]:
    """(settings.toml whose cache holds a 4-concept NMF dictionary of SOURCE, its layer)."""
    from app.engine.runtime.cache import model_key
    from app.engine.runtime.directions import default_names, write_direction_set
    from app.engine.runtime.models import load_bundled

    key = model_key(load_bundled(torch.device("cpu")))
    name = f"{SOURCE}@nmf4"
    h = np.abs(np.random.default_rng(0).standard_normal((4, 112)))
    write_direction_set(tmp_path / "cache" / "concepts" / key / SOURCE / "nmf4-planted",
                        h / np.linalg.norm(h, axis=1, keepdims=True), default_names(4),
                        {"method": "nmf", "source_layer": SOURCE, "concept_layer": name,
                         "images": 3, "samples": 100, "relative_error": 0.5, "signed": True})
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[cache]\ndir = "{(tmp_path / "cache").as_posix()}"\n')
    return str(settings), name


def test_bench_shows_the_concept_layer_it_is_given(capsys, tmp_path):
    settings, name = settings_with_dictionary(tmp_path)
    code = main(["bench", "--json", "--frames", "2", "--rounds", "1", "--no-gui",
                 "--layer", name, "--settings", settings, "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["layer"] == name and doc["layer_shape"] == [4, 14, 14]
    assert doc["pipeline_fps"] > 0 and doc["bare_forward_fps"] > 0


def test_bench_names_the_cached_concept_layers_for_an_unknown_one(capsys, tmp_path):
    settings, name = settings_with_dictionary(tmp_path)
    code = main(["bench", "--json", "--frames", "2", "--rounds", "1", "--no-gui",
                 "--layer", f"{SOURCE}@nmf32", "--settings", settings, "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err, err
    line = err.splitlines()[-1]  # after the progress bar's line: one line of error
    assert line.startswith("deepvis: error: ") and err.count("error") == 1
    assert f"--layer {SOURCE}@nmf32: not a layer" in line and name in line
