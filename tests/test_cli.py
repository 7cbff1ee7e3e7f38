"""The command-line contract of DESIGN.md: outputs, --json, exit status 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from tests.photos import CAT_CLASSES, COFFEE_CLASSES, chelsea, coffee, write_jpeg

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    return write_jpeg(d / "cat.jpg", chelsea()), write_jpeg(d / "coffee.jpg", coffee())


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_predict_json_on_real_photos(capsys, photos):
    cat, cup = photos
    code, out, err = _run(capsys, "predict", str(cat), str(cup), "--json", "--device", "cpu")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["model"] == "efficientnet_lite0" and doc["device"] == "cpu"
    first = [r["top"][0]["index"] for r in doc["results"]]
    assert first[0] in CAT_CLASSES and first[1] in COFFEE_CLASSES
    assert len(doc["results"][0]["top"]) == 5
    assert doc["results"][1]["top"][0]["label"] == "espresso"


@pytest.mark.slow
def test_predict_text_and_layers_json(capsys, photos):
    code, out, _ = _run(capsys, "predict", str(photos[1]))
    assert code == 0 and "espresso" in out
    code, out, _ = _run(capsys, "layers", "--json")
    doc = json.loads(out)
    shapes = {layer["name"]: layer["shape"] for layer in doc["layers"]}
    assert shapes["_conv_stem"] == [32, 112, 112]
    assert shapes["_conv_head"] == [1280, 7, 7]
    assert doc["default_layer"] in shapes


def test_models_lists_the_bundled_model_as_offline(capsys):
    code, out, _ = _run(capsys, "models", "--json")
    assert code == 0
    doc = {m["name"]: m for m in json.loads(out)}
    assert doc["efficientnet_lite0"]["offline"] is True
    assert {"resnet18", "googlenet", "vgg16", "alexnet", "mobilenet_v3_large"} <= set(doc)
    # transformers are models like the others now (issue 15), Lite1/2 bundled offline
    assert {"vit_b_16", "swin_t", "maxvit_t"} <= set(doc)
    assert doc["efficientnet_lite1"]["offline"] and doc["efficientnet_lite2"]["offline"]


@pytest.mark.parametrize(("argv", "fragment"), [
    (["predict", "/no/such.jpg"], "image not found"),
    (["predict", "x.jpg", "--model", "nonsense_net"], "image not found"),
    (["layers", "--model", "nonsense_net"], "unknown model 'nonsense_net'"),
    (["layers", "--device", "tpu"], "invalid choice"),
    (["--source", "/no/such/video.mp4"], "source not found"),
    (["--screenshot", "x.png", "--frames", "0"], "--frames must be positive"),
    (["--settings", "/no/such.toml"], "settings file not found"),
    (["--unit", "-3"], "--unit must not be negative"),
    (["--bogus"], "unrecognized arguments"),
    (["render", "--layer", "_blocks.4", "--units", "1", "--sheet", "s.jpg"], "written as a .png"),
    (["render", "--layer", "_blocks.4", "--units", "1", "--size", "5000"], "between 16 and 1024"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, fragment):
    with pytest.raises(SystemExit) as exc:
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_corrupt_image_and_wrong_checkpoint_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really")
    code, _, err = _run(capsys, "predict", str(bad))
    assert code == 2 and "bad.jpg" in err and err.count("\n") == 1
    ckpt = tmp_path / "weights.pth"
    ckpt.write_bytes(b"garbage, not a checkpoint")
    code, _, err = _run(capsys, "layers", "--model", f"resnet18:{ckpt}")
    assert code == 2 and "weights.pth" in err and err.count("\n") == 1


def test_python_m_app_reports_errors_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "app", "layers", "--model", str(tmp_path / "missing.pt")],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("deepvis: error:") and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


@pytest.mark.slow
def test_bench_json_reports_side_by_side_figures(capsys):
    code, out, err = _run(capsys, "bench", "--json", "--frames", "3", "--rounds", "1",
                          "--device", "cpu")
    assert code == 0, err
    doc = json.loads(out)
    for key in ("bare_forward_fps", "pipeline_fps", "ratio", "gui_update_ms"):
        assert doc[key] > 0, key
    assert doc["ratio"] == pytest.approx(doc["pipeline_fps"] / doc["bare_forward_fps"], rel=0.01)
    assert doc["gui_layer"].startswith("_conv_head 1280")
    assert doc["hooked_layers"] > 100 and doc["input_size"] == 224


@pytest.mark.slow
def test_predict_a_folder_predicts_every_image_in_it(capsys, photos):
    folder = photos[0].parent
    code, out, err = _run(capsys, "predict", str(folder), "--json", "--device", "cpu")
    assert code == 0, err
    doc = json.loads(out)
    assert [Path(r["image"]).name for r in doc["results"]] == ["cat.jpg", "coffee.jpg"]
    assert doc["results"][1]["top"][0]["label"] == "espresso"
    code, _, err = _run(capsys, "predict", str(folder / "empty"))
    assert code == 2 and "image not found" in err
    (folder / "empty").mkdir()
    code, _, err = _run(capsys, "predict", str(folder / "empty"))
    assert code == 2 and "no images in" in err and err.count("\n") == 1


def test_global_flags_work_before_the_subcommand(capsys, tmp_path):
    settings = tmp_path / "s.toml"
    settings.write_text("[model]\ndefault = \"nonsense_net\"\n")
    code, _, err = _run(capsys, "--settings", str(settings), "layers")
    assert code == 2 and "unknown model 'nonsense_net'" in err  # the file was read
    code, out, _ = _run(capsys, "--device=cpu", "--settings", str(settings), "models", "--json")
    assert code == 0 and json.loads(out)


@pytest.mark.slow
def test_a_unit_or_layer_the_model_lacks_exits_2_with_its_unit_count(capsys):
    code, _, err = _run(capsys, "--unit", "9999", "--device", "cpu")
    assert code == 2 and err.count("\n") == 1
    assert "--unit 9999" in err and "units (0-" in err  # the layer and its real count
    code, _, err = _run(capsys, "--layer", "_blocks.4", "--unit", "40", "--device", "cpu")
    assert code == 2 and "_blocks.4 has 40 units (0-39)" in err
    code, _, err = _run(capsys, "--layer", "no.such.layer", "--device", "cpu")
    assert code == 2 and "--layer no.such.layer: no such layer" in err


def test_a_state_dict_of_another_architecture_says_so_in_one_short_line(capsys, tmp_path):
    import torch
    import torchvision

    ckpt = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), ckpt)
    code, _, err = _run(capsys, "layers", "--model", f"resnet18:{ckpt}")
    assert code == 2 and err.count("\n") == 1 and len(err) < 400, err
    assert "does not fit resnet18" in err and "missing (conv1.weight" in err
    assert "unexpected (features.0.0.weight" in err and "more" in err


@pytest.mark.slow
def test_render_without_out_writes_under_the_cache_and_says_where(capsys, tmp_path,
                                                                  monkeypatch):
    settings = tmp_path / "s.toml"
    settings.write_text(f"[cache]\ndir = \"{tmp_path / 'cache'}\"\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, "render", "--layer", "_blocks.2", "--units", "1",
                          "--steps", "2", "--size", "32", "--settings", str(settings),
                          "--device", "cpu", "--json")
    assert code == 0, err
    written = Path(json.loads(out)["units"][0]["file"])
    assert written.is_file() and (tmp_path / "cache") in written.parents
    assert not (tmp_path / "renders").exists()
    assert f"PNGs in {written.parent}" in err


@pytest.mark.slow
def test_predict_a_folder_skips_and_lists_unreadable_files(capsys, photos, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in photos:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (folder / "empty.png").write_bytes(b"")
    code, out, err = _run(capsys, "predict", str(folder), "--json", "--device", "cpu")
    assert code == 0, err
    doc = json.loads(out)
    assert [Path(r["image"]).name for r in doc["results"]] == ["cat.jpg", "coffee.jpg"]
    assert doc["results"][1]["top"][0]["label"] == "espresso"
    assert sorted(Path(s["path"]).name for s in doc["skipped"]) == ["broken.jpg", "empty.png"]
    assert all(s["reason"] for s in doc["skipped"])
    code, out, err = _run(capsys, "predict", str(folder), "--device", "cpu")
    assert code == 0 and "espresso" in out and "cat.jpg" in out
    assert "skipped 2 unreadable file(s)" in err and "broken.jpg" in err and "empty.png" in err
    for name in ("cat.jpg", "coffee.jpg"):
        (folder / name).unlink()
    code, out, err = _run(capsys, "predict", str(folder), "--device", "cpu")
    assert code == 2 and out == "" and "none of the 2 images could be read" in err
    assert err.count("\n") == 1
