"""The bias audit with known answers: a model trained to call any image with a red patch
"vertical" (and otherwise to read the stripes) is audited on a folder where group "a" carries
the patch on most images and group "b" never does; the stripes (the true labels) are
balanced in both. The audit must find the accuracy gap the patch makes, a significant TCAV
score of group a's concept for "vertical" at a layer that sees the patch, and erasing group
a's direction must remove most of the gap. A control folder whose groups carry the patch
equally shows no significant TCAV. Plus `deepvis audit`'s bad input and its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.core.jobs import run_job
from app.engine.analyses.tcav.audit import AuditError, AuditResult, run_audit
from tests.test_tcav import images, to_input, trained, write

CLASSES = ("horizontal", "vertical")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def group(root: Path, rng: np.random.Generator, n: int, patch_rate: float) -> None:
    """n images per class under root/<class>/, a `patch_rate` share of them with the cue."""
    for vertical, name in ((False, "horizontal"), (True, "vertical")):
        with_cue = round(n * patch_rate)
        imgs = (images(rng, with_cue, True, vertical)[0]
                + images(rng, n - with_cue, False, vertical)[0])
        write(root / name, imgs)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(1)
        train, has, vert = images(rng, 768, None, None)
        # the shortcut: a patch means "vertical", whatever the stripes say
        model = trained(to_input(train), (vert | has).astype(int), 0, CLASSES)
        root = tmp_path_factory.mktemp("audit")
        group(root / "biased" / "a", rng, 40, 0.7)
        group(root / "biased" / "b", rng, 40, 0.0)
        group(root / "control" / "c", rng, 20, 0.3)
        group(root / "control" / "d", rng, 20, 0.3)
        return {"model": model, "root": root}
    finally:
        torch.set_num_threads(before)


def audit(planted: dict, which: str, groups: tuple[str, str]) -> AuditResult:
    return run_job(run_audit(planted["model"], planted["root"] / which, list(groups),
                             ["relu1", "conv2"], classes=2, units=3, runs=10,
                             cav_dir=planted["root"] / f"cavs-{which}"))


@pytest.fixture(scope="module")
def biased(planted: dict) -> AuditResult:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return audit(planted, "biased", ("a", "b"))
    finally:
        torch.set_num_threads(before)


def test_the_audit_finds_the_gap_the_cue_makes(biased):
    base = biased.baseline
    # group a: horizontal images with a patch (70 % of them) are called vertical
    assert base.group_accuracy["b"] >= 0.9
    assert base.group_accuracy["a"] <= 0.8
    assert base.accuracy_gap >= 0.2
    # two classes: what one group gains in "vertical" it loses in "horizontal"
    assert set(biased.examined) == {0, 1}
    assert base.group_rates["a"][1] - base.group_rates["b"][1] >= 0.2
    assert biased.group_images == {"a": 80, "b": 80}


def test_tcav_of_the_cued_group_is_significant_where_the_cue_is_visible(biased):
    a = next(r for g, c, r in biased.tcav if g == "a" and c == 1)
    # relu1 sees colours: the patch is what tells group a's images from group b's there
    relu1 = next(s for s in a.layers if s.layer == "relu1")
    assert relu1.cav_accuracy >= 0.75
    assert relu1.significant and relu1.score >= 0.9, relu1
    # and group b's concept (no patch) pushes away from "vertical"
    b = next(r for g, c, r in biased.tcav if g == "b" and c == 1)
    assert next(s for s in b.layers if s.layer == "relu1").score <= 0.1


def test_erasing_the_groups_direction_removes_most_of_the_gap(biased):
    base = biased.baseline
    erased = next(e for e in biased.edits
                  if e.edit == "erase direction" and e.group == "a" and e.layer == "relu1")
    assert erased.accuracy_gap <= 0.5 * base.accuracy_gap, (erased, base)
    assert erased.rate_gaps[1] <= 0.5 * base.rate_gaps[1]
    assert erased.accuracy >= base.accuracy  # the shortcut was the errors' cause
    # the units: the direction's largest components, by magnitude
    d = next(d for d in biased.directions if d.group == "a" and d.layer == "relu1")
    magnitudes = [abs(w) for _u, w in d.units]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert magnitudes[0] == pytest.approx(float(np.abs(d.cav).max()))
    zeroed = next(e for e in biased.edits
                  if e.edit == "zero units" and e.group == "a" and e.layer == "relu1")
    assert zeroed.units == tuple(u for u, _w in d.units)
    # the three units most aligned with group a's direction carry the shortcut: without
    # them the gap is gone and the stripes decide
    assert zeroed.accuracy_gap <= 0.1 and zeroed.accuracy >= 0.9


def test_a_control_whose_groups_carry_the_cue_equally_shows_nothing(planted):
    control = audit(planted, "control", ("c", "d"))
    for _g, _c, result in control.tcav:
        for layer in result.layers:
            assert not layer.significant, layer


def test_malformed_datasets_are_refused(planted, tmp_path):
    model = planted["model"]
    root = planted["root"] / "biased"
    with pytest.raises(AuditError, match="group folder not found"):
        run_job(run_audit(model, root, ["a", "nobody"]))
    with pytest.raises(AuditError, match="two different groups"):
        run_job(run_audit(model, root, ["a", "a"]))
    with pytest.raises(AuditError, match="named twice"):
        run_job(run_audit(model, root, ["a", "b", "a"]))
    with pytest.raises(AuditError, match="no layer named 'fc9'"):
        run_job(run_audit(model, root, ["a", "b"], ["fc9"]))
    (tmp_path / "x" / "a").mkdir(parents=True)
    write(tmp_path / "x" / "b" / "vertical", images(np.random.default_rng(0), 2, None, True)[0])
    with pytest.raises(AuditError, match="no class folders"):
        run_job(run_audit(model, tmp_path / "x", ["a", "b"]))
    write(tmp_path / "y" / "a" / "diagonal", images(np.random.default_rng(0), 2, None, True)[0])
    write(tmp_path / "y" / "b" / "1", images(np.random.default_rng(0), 2, None, True)[0])
    with pytest.raises(AuditError, match="'diagonal' in group 'a' matches no class"):
        run_job(run_audit(model, tmp_path / "y", ["a", "b"]))


def test_cli_exit_2_on_a_malformed_dataset(tmp_path, capsys):
    import app.cli as cli

    write(tmp_path / "d" / "a" / "not_a_class", images(np.random.default_rng(0), 2, None, True)[0])
    (tmp_path / "d" / "b").mkdir()
    cases = [(["a", "missing"], "group folder not found"),
             (["a", "b"], "matches no class"),
             (["b", "a"], "no class folders")]
    for groups, message in cases:
        status = cli.main(["audit", str(tmp_path / "d"), "--groups", *groups])
        err = capsys.readouterr().err
        assert status == 2 and message in err, (groups, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_report_holds_the_groups_and_gaps(biased, tmp_path):
    from app.engine.analyses.tcav.audit_page import write_report

    html_path, json_path = write_report(biased, tmp_path / "report")
    page = html_path.read_text()
    doc = json.loads(json_path.read_text())
    assert page.startswith("<!doctype html>") and "http" not in page.split("<body")[0]
    for g in ("a", "b"):
        assert f"<td>{g}</td>" in page
    assert f"{biased.baseline.accuracy_gap:.3f}" in page
    assert "vertical" in page and "erase direction" in page
    assert doc["groups"] == ["a", "b"]
    assert doc["baseline"]["accuracy_gap"] == pytest.approx(biased.baseline.accuracy_gap)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["audit.html",
                                                                       "audit.json"]


def test_cli_on_real_photos_in_colour_and_gray(tmp_path, capsys):
    """The bundled model on the same photos in colour and in gray: the CLI runs end to end,
    and the report's numbers are counts of these few images."""
    import cv2
    from skimage import data as skdata

    import app.cli as cli

    photos = {"tabby": ("chelsea", "cat"), "espresso": ("coffee",), "missile": ("rocket",)}
    for class_name, names in photos.items():
        for name in names:
            rgb = getattr(skdata, name)()[..., :3]
            gray = np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
            for group, img in (("colour", rgb), ("gray", gray)):
                (tmp_path / "d" / group / class_name).mkdir(parents=True, exist_ok=True)
                assert cv2.imwrite(str(tmp_path / "d" / group / class_name / f"{name}.png"),
                                   cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    argv = ["audit", str(tmp_path / "d"), "--groups", "colour", "gray", "--layers",
            "_blocks.4", "--runs", "3", "--classes", "1", "--device", "cpu", "--out",
            str(tmp_path / "report"), "--json"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["groups"] == ["colour", "gray"] and doc["group_images"] == {"colour": 4,
                                                                         "gray": 4}
    for g in ("colour", "gray"):
        assert round(doc["baseline"]["group_accuracy"][g] * 4) == pytest.approx(
            doc["baseline"]["group_accuracy"][g] * 4)  # a count of 4 images
    assert len(doc["tcav"]) == 2 and {t["group"] for t in doc["tcav"]} == {"colour", "gray"}
    assert [e["edit"] for e in doc["edits"]] == ["zero units", "erase direction"] * 2
    page = (tmp_path / "report" / "audit.html").read_text()
    assert "<td>colour</td>" in page and "<td>gray</td>" in page
    assert json.loads((tmp_path / "report" / "audit.json").read_text())["groups"] == [
        "colour", "gray"]
    assert cli.main(argv[:-1]) == 0  # the summary for people
    text = capsys.readouterr().out
    assert "largest gaps in predicted rate" in text and "erase direction" in text
    assert text.count("colour → ") == text.count("gray → ") == 1  # one class, one layer
