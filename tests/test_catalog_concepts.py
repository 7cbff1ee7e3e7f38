"""`deepvis catalog --layers SOURCE@TAG`: a concept layer catalogued like any layer, its
units the concepts, each page and tile carrying the concept's stored name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main

SOURCE = "_blocks.8"  # 112 channels in the bundled model
NAMES = ("striped fur", "blue sky", "concept 2", "ceramic rim")


def plant_dictionary(tmp_path: Path) -> str:
    """A complete 4-concept NMF dictionary of SOURCE with stored names, in a fresh cache."""
    from app.engine.runtime.cache import model_key
    from app.engine.runtime.directions import write_direction_set
    from app.engine.runtime.models import load_bundled

    key = model_key(load_bundled(torch.device("cpu")))
    name = f"{SOURCE}@nmf4"
    h = np.abs(np.random.default_rng(0).standard_normal((4, 112)))
    write_direction_set(tmp_path / "cache" / "concepts" / key / SOURCE / "nmf4-planted",
                        h / np.linalg.norm(h, axis=1, keepdims=True), NAMES,
                        {"method": "nmf", "source_layer": SOURCE, "concept_layer": name,
                         "images": 3, "samples": 100, "relative_error": 0.5, "signed": True})
    return name


@pytest.fixture
def settings(tmp_path: Path) -> str:
    path = tmp_path / "settings.toml"
    path.write_text(f'[cache]\ndir = "{(tmp_path / "cache").as_posix()}"\n'
                    "[render]\nsteps = 6\nsize = 64\nbatch_size = 4\n", encoding="utf-8")
    return str(path)


def test_a_concept_layer_is_catalogued_with_its_concepts_named(capsys, tmp_path, settings):
    layer = plant_dictionary(tmp_path)
    out = tmp_path / "site"
    code = main(["catalog", "--layers", layer, "--units", "0,3", "--seeds", "1", "--out",
                 str(out), "--json", "--settings", settings, "--device", "cpu"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    (doc,) = json.loads(stdout)["layers"]
    assert doc["layer"] == layer and doc["channels"] == 4 and doc["units"] == [0, 3]
    assert doc["names"] == ["striped fur", "ceramic rim"]
    folder = out / doc["index"].rsplit("/", 1)[0]
    page = (folder / "3.html").read_text(encoding="utf-8")
    assert "ceramic rim: one of 4 directions of _blocks.8" in page
    assert "the concept&#x27;s mean code" in page or "the concept's mean code" in page
    index = (folder / "index.html").read_text(encoding="utf-8")
    assert "0 striped fur" in index and "3 ceramic rim" in index
    assert (folder / "0" / "preferred-0.png").stat().st_size > 0
    assert not (folder / "1.html").exists()  # only the units asked for


def test_an_unknown_concept_layer_names_the_cached_ones(capsys, tmp_path, settings):
    plant_dictionary(tmp_path)
    code = main(["catalog", "--layers", f"{SOURCE}@nmf32", "--out", str(tmp_path / "site"),
                 "--settings", settings, "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"no direction layer '{SOURCE}@nmf32'" in err and f"{SOURCE}@nmf4" in err
    assert not (tmp_path / "site").exists()
