"""`deepvis --layer SOURCE@TAG`: the live window opens on a concept layer the cache holds,
and names the ones it holds when asked for another (one line, exit status 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.cli import main

SOURCE = "_blocks.11"  # 192 channels in the bundled model


@pytest.fixture(scope="module")
def key() -> str:
    from app.engine.runtime.cache import model_key
    from app.engine.runtime.models import load_bundled

    return model_key(load_bundled(torch.device("cpu")))


def settings_with_cache(tmp_path: Path) -> Path:
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[cache]\ndir = "{(tmp_path / "cache").as_posix()}"\n')
    return settings


def plant_dictionary(cache: Path, key: str, k: int) -> str:
    """A complete NMF dictionary of `SOURCE`, stored as `deepvis concepts` stores one."""
    from app.engine.runtime.directions import default_names, write_direction_set

    name = f"{SOURCE}@nmf{k}"
    h = np.abs(np.random.default_rng(0).standard_normal((k, 192)))
    write_direction_set(cache / "concepts" / key / SOURCE / f"nmf{k}-planted",
                        h / np.linalg.norm(h, axis=1, keepdims=True), default_names(k),
                        {"method": "nmf", "source_layer": SOURCE, "concept_layer": name,
                         "images": 3, "samples": 100, "relative_error": 0.5, "signed": True})
    return name


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_an_unknown_concept_layer_names_the_ones_in_the_cache(capsys, tmp_path, key):
    settings = str(settings_with_cache(tmp_path))
    code, err = run(capsys, "--layer", f"{SOURCE}@nmf32", "--settings", settings,
                    "--device", "cpu")
    assert code == 2 and err.count("\n") == 1, err
    assert f"--layer {SOURCE}@nmf32: no such direction layer" in err and "none is learned" in err
    plant_dictionary(tmp_path / "cache", key, 4)
    plant_dictionary(tmp_path / "cache", key, 6)
    code, err = run(capsys, "--layer", f"{SOURCE}@nmf32", "--settings", settings,
                    "--device", "cpu")
    assert code == 2 and err.count("\n") == 1, err
    assert f"the cache has {SOURCE}@nmf4, {SOURCE}@nmf6" in err


def test_a_cached_concept_layer_opens_the_window_on_it(capsys, tmp_path, key, monkeypatch):
    import app.desktop

    opened: list[dict[str, object]] = []

    def launch(_settings: object, **kw: object) -> int:
        opened.append(kw)
        return 0

    monkeypatch.setattr(app.desktop, "launch_window", launch)
    settings = str(settings_with_cache(tmp_path))
    name = plant_dictionary(tmp_path / "cache", key, 4)
    code, err = run(capsys, "--layer", name, "--unit", "4", "--settings", settings,
                    "--device", "cpu")
    assert code == 2 and f"--unit 4: {name} has 4 units (0-3)" in err  # its concepts
    assert not opened
    code, err = run(capsys, "--layer", name, "--unit", "3", "--settings", settings,
                    "--device", "cpu")
    assert code == 0, err
    assert len(opened) == 1 and opened[0]["layer"] == name and opened[0]["unit"] == 3
