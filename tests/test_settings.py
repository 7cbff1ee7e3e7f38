"""settings.toml → frozen dataclasses; every mistake names its key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from app.core.settings import Settings, SettingsError, load_settings, with_overrides

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_settings_file_lists_every_default():
    data = tomllib.loads((ROOT / "settings.toml").read_text())
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        values = getattr(defaults, section.name)
        for f in dataclasses.fields(values):
            assert f.name in data[section.name], f"settings.toml lacks [{section.name}].{f.name}"
            value = data[section.name][f.name]
            value = tuple(value) if isinstance(value, list) else value
            assert value == getattr(values, f.name)
    assert load_settings(ROOT / "settings.toml") == defaults


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(("text", "fragment"), [
    ("[view]\ncolour = 'red'\n", "[view].colour"),
    ("[viewer]\nunit = 1\n", "[viewer]"),
    ("[view]\nunit = 'three'\n", "[view].unit must be int"),
    ("[view]\nunit = -1\n", "[view].unit must not be negative"),
    ("[model]\ndevice = 'tpu'\n", "[model].device must be one of"),
    ("[source]\nmirror = 1\n", "[source].mirror must be bool"),
    ("[source]\ncamera_fps = true\n", "[source].camera_fps must be int"),
    ("[gui]\nrefresh_ms = 0\n", "[gui].refresh_ms must be positive"),
    ("[view]\noverlay_opacity = 1.5\n", "[view].overlay_opacity"),
    ("[scan]\nlayers = 'conv1'\n", "[scan].layers must be a list of strings"),
    ("[render]\npreset = 'deepdream'\n", "[render].preset must be one of fast, lucid"),
    ("[render]\nbatch_size = 0\n", "[render].batch_size must be positive"),
    ("[render]\nsize = 4096\n", "[render].size must be 0 (the preset's) or 16 to 1024"),
    ("[render]\nsize = 8\n", "[render].size must be 0 (the preset's) or 16 to 1024"),
    ("view = 3\n", "[view] must be a table"),
    ("[view\n", "not valid TOML"),
])
def test_bad_settings_name_the_key(tmp_path, text, fragment):
    with pytest.raises(SettingsError) as err:
        load_settings(_write(tmp_path, text))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value).strip()


def test_partial_file_keeps_other_defaults_and_ints_become_floats(tmp_path):
    s = load_settings(_write(tmp_path, "[view]\nunit = 4\noverlay_opacity = 1\n"))
    assert s.view.unit == 4 and s.view.overlay_opacity == 1.0
    assert s.view.colormap == Settings().view.colormap
    assert s.model == Settings().model


def test_missing_file_and_overrides(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.toml")
    s = with_overrides(Settings(), "model", device="cpu")
    assert s.model.device == "cpu" and Settings().model.device == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.model.device = "cuda"  # type: ignore[misc]


def test_render_preset_choices_are_the_engines_presets():
    from app.core.settings import RENDER_PRESETS
    from app.engine.analyses.featurevis.presets import PRESETS

    assert sorted(PRESETS) == sorted(RENDER_PRESETS)


def test_model_threads_sets_torchs_cpu_threads_for_the_command(tmp_path):
    import argparse

    import torch

    from app.cli.common import settings_for

    path = tmp_path / "settings.toml"
    path.write_text("[model]\nthreads = 1\n")
    before = torch.get_num_threads()
    try:
        s = settings_for(argparse.Namespace(settings=path))
        assert s.model.threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    path.write_text("[model]\nthreads = -2\n")
    with pytest.raises(SettingsError, match=r"\[model\]\.threads must not be negative"):
        settings_for(argparse.Namespace(settings=path))
