"""Direction layers (`runtime.directions`): a concept layer in every engine view and command.

One small NMF dictionary is learned once per module (8 scikit-image photos, `_blocks.8` of
the bundled model, K = 8) into a cache folder that the commands are pointed at through
`[cache].dir`, as a user's would be.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from app.core.jobs import run_job
from app.engine.runtime.directions import (
    DirectionLayer,
    DirectionSet,
    UnknownDirectionLayer,
    direction_layers,
    direction_sets,
    load_direction_set,
    resolve,
    split_direction_layer,
    write_direction_set,
)

SOURCE = "_blocks.8"
K = 8
LAYER = f"{SOURCE}@nmf{K}"
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "cat", "immunohistochemistry",
          "hubble_deep_field")


@pytest.fixture(scope="module")
def loaded():
    from app.engine.runtime.models import load_bundled

    return load_bundled(torch.device("cpu"))


@pytest.fixture(scope="module")
def world(tmp_path_factory, loaded):
    """(photos folder, cache dir, settings.toml, the dictionary) learned once."""
    from skimage import data as skdata

    from app.engine.analyses.concepts import learn_concepts

    base = tmp_path_factory.mktemp("directions")
    photos = base / "photos"
    photos.mkdir()
    for name in PHOTOS:
        img = getattr(skdata, name)()
        rgb = np.dstack([img] * 3) if img.ndim == 2 else img[..., :3]
        assert cv2.imwrite(str(photos / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cache = base / "cache"
    d = run_job(learn_concepts(loaded, photos, SOURCE, K, samples=1200, iterations=150,
                               cache_dir=str(cache)))
    assert d.concept_layer == LAYER
    settings = base / "settings.toml"
    settings.write_text(f"[cache]\ndir = \"{cache}\"\n")
    return photos, cache, settings, d


def source_acts(loaded, images: list[np.ndarray]) -> torch.Tensor:
    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
    from app.engine.runtime.recorder import ActivationRecorder

    x = prepare_batch([frame_to_tensor(i, loaded.device) for i in images], loaded.preprocess)
    with torch.no_grad(), ActivationRecorder(loaded.module, [SOURCE]) as rec:
        rec.run(x)
        return rec.activations[SOURCE].clone()


# -- the runtime: names, the store, the math --------------------------------------------------


def test_names_split_at_the_last_at_sign():
    assert split_direction_layer("a.b@nmf32") == ("a.b", "nmf32")
    assert split_direction_layer("a.b:cls@sae512") == ("a.b:cls", "sae512")
    assert split_direction_layer("_blocks.11") == ("_blocks.11", "")
    assert split_direction_layer("@x") == ("@x", "") and split_direction_layer("a@") == ("a@", "")


def test_the_store_finds_the_newest_complete_set_per_name(tmp_path):
    root = tmp_path / "cache"
    rng = np.random.default_rng(0)

    def write(sub: str, name: str, kind: str = "linear", k: int = 3) -> Path:
        folder = root / "directions" / "model-x" / "a.b" / sub
        write_direction_set(folder, rng.standard_normal((k, 5)), [f"d{i}" for i in range(k)],
                            {"kind": kind, "source_layer": "a.b", "direction_layer": name})
        return folder

    old = write("cav-1", "a.b@cav")
    new = write("cav-2", "a.b@cav", k=4)
    import os

    os.utime(old / "meta.json", (1, 1))
    write("atlas", "a.b@atlas")
    broken = write("half", "a.b@half")
    (broken / "meta.json").unlink()  # a writer killed before its last file
    sets = direction_sets(root, "model-x")
    assert list(sets) == ["a.b@atlas", "a.b@cav"]
    assert sets["a.b@cav"].folder == new and sets["a.b@cav"].k == 4
    assert sets["a.b@cav"].names == ("d0", "d1", "d2", "d3")
    assert direction_sets(root, "other-model") == {}
    with pytest.raises(UnknownDirectionLayer, match=r"a\.b@atlas, a\.b@cav"):
        resolve("a.b@nmf8", sets)
    assert load_direction_set(broken) is None


def test_linear_codes_are_dot_products_and_the_parts_add_up():
    rng = np.random.default_rng(1)
    d = rng.standard_normal((3, 6)).astype(np.float32) * 2
    layer = DirectionLayer(DirectionSet("l@cav", "l", "linear", d, ("a", "b", "c")),
                           torch.device("cpu"))
    acts = torch.tensor(rng.standard_normal((2, 6, 4, 5)).astype(np.float32))
    codes = layer.codes(acts)
    expected = np.einsum("nchw,kc->nkhw", acts.numpy(), d)
    assert np.allclose(codes.numpy(), expected, atol=1e-5)
    parts = layer.decompose(acts)
    total = layer.component(parts.codes) + parts.residual + parts.rest
    assert torch.allclose(total, acts, atol=1e-5)
    # deleting one direction removes the projection on it: the result is orthogonal to it
    gone = layer.delete(acts, [1])
    assert np.abs(np.einsum("nchw,c->nhw", gone.numpy(), d[1])).max() < 1e-4
    assert torch.equal(layer.objective_direction(2), torch.tensor(d[2]))
    with pytest.raises(ValueError, match="no unit 3"):
        layer.delete(acts, [3])


# -- the bundled model: layers, recorder, scan ----------------------------------------------


@pytest.mark.slow
def test_layers_lists_the_concept_layer_after_its_source(capsys, world):
    import app.cli as cli

    _, _, settings, _ = world
    assert cli.main(["layers", "--device", "cpu", "--settings", str(settings), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = [entry["name"] for entry in doc["layers"]]
    at = names.index(SOURCE)
    assert names[at + 1] == LAYER
    entry, source = doc["layers"][at + 1], doc["layers"][at]
    assert entry["kind"] == "concepts" and entry["shape"] == [K, *source["shape"][1:]]
    assert doc["default_layer"] != LAYER
    assert cli.main(["layers", "--device", "cpu", "--json"]) == 0  # another cache: none
    assert LAYER not in capsys.readouterr().out


@pytest.mark.slow
def test_the_recorder_records_codes_of_the_source(world, loaded):
    from skimage import data as skdata

    from app.engine.analyses.concepts import ConceptLayer
    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
    from app.engine.runtime.recorder import ActivationRecorder, truncated_forward

    _, cache, _, d = world
    dirs = direction_layers(loaded, [LAYER, "_blocks.3"], str(cache))
    assert list(dirs) == [LAYER]
    acts = source_acts(loaded, [skdata.chelsea()])
    x = prepare_batch([frame_to_tensor(skdata.chelsea(), loaded.device)], loaded.preprocess)
    with torch.no_grad(), ActivationRecorder(loaded.module, [LAYER], dirs) as rec:
        forward, unhook = truncated_forward(loaded.module, rec, [LAYER])
        rec.run(x, forward)
        unhook()
        got = rec.activations[LAYER]
        assert rec.kinds[LAYER] == "concepts"
        assert not any(k.startswith("_blocks.9") for k in rec.activations)  # stopped early
    expected = ConceptLayer(d, torch.device("cpu")).codes(acts)
    assert got.shape == (1, K, *acts.shape[2:])
    assert torch.allclose(got, expected, atol=1e-5) and float(got.max()) > 0
    with pytest.raises(ValueError, match="no direction set given"):
        ActivationRecorder(loaded.module, [LAYER])


@pytest.mark.slow
def test_scan_of_a_concept_layer_finds_the_photos_where_each_concept_is_strongest(
        world, loaded, tmp_path):
    from app.core.scan_results import load_scan_folder
    from app.engine.analyses.concepts import ConceptLayer
    from app.engine.analyses.patches import ScanError, scan

    photos, cache, _, d = world
    report = run_job(scan(loaded, photos, [LAYER], top_k=3, batch_size=4, workers=0,
                          cache_dir=str(cache), out=tmp_path / "scan"))
    res = load_scan_folder(report.layers[LAYER])
    assert res is not None and res.units == K
    # independent: each photo's maximum code per concept, from the source activation
    from app.capture.images import downscale_to, read_image

    files = sorted(photos.iterdir())
    layer = ConceptLayer(d, torch.device("cpu"))
    peaks = np.stack([layer.codes(source_acts(loaded, [downscale_to(
        read_image(str(f), 80_000_000), 1280)]))[0].amax((1, 2)).numpy() for f in files])
    for unit in range(K):
        top = res.top(unit)
        best = int(np.argmax(peaks[:, unit]))
        assert Path(top[0].path).name == files[best].name, unit
        assert top[0].value == pytest.approx(float(peaks[best, unit]), rel=1e-3, abs=1e-4)
    with pytest.raises(ScanError, match=r"no direction layer '_blocks\.8@nmf99'"):
        run_job(scan(loaded, photos, [f"{SOURCE}@nmf99"], cache_dir=str(cache),
                     out=tmp_path / "scan2"))


# -- render: the direction objective ----------------------------------------------------------


def test_the_direction_objective_is_dot_times_cosine_to_the_power():
    from app.engine.analyses.featurevis import objectives as obj

    acts = torch.zeros(2, 3, 2, 2)
    acts[0, :, 0, 0] = torch.tensor([3.0, 4.0, 0.0])  # along v·: dot 3, cos 3/5
    acts[1, :, 1, 1] = torch.tensor([0.0, 0.0, 2.0])  # orthogonal: dot 0
    v = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    got = obj.direction_cossim(v, 2.0, "max")(acts, torch.zeros(2, 3, 4, 4))
    assert got.tolist() == pytest.approx([3 * 0.6 ** 2, 0.0])
    mean = obj.direction_cossim(v, 2.0, "mean")(acts, torch.zeros(2, 3, 4, 4))
    assert mean.tolist() == pytest.approx([3 * 0.6 ** 2 / 4, 0.0])
    # the cosine factor prefers the aligned vector to a longer, misaligned one
    long = torch.zeros(1, 3, 1, 1)
    long[0, :, 0, 0] = torch.tensor([3.0, 30.0, 0.0])
    aligned = torch.zeros(1, 3, 1, 1)
    aligned[0, 0, 0, 0] = 3.0
    f = obj.direction_cossim(v[:1], 2.0)
    assert float(f(aligned, aligned)) > float(f(long, long))


@pytest.mark.slow
def test_a_rendered_concept_beats_the_best_photo_at_its_own_code(capsys, world, loaded):
    """Issue 23's check: the concept's preferred image, measured as the concept's code (the
    map maximum, as the scan ranks), beats the best real photo of the folder."""
    import app.cli as cli
    from app.engine.analyses.patches import scan

    photos, cache, settings, _ = world
    run_job(scan(loaded, photos, [LAYER], top_k=3, batch_size=4, workers=0,
                 cache_dir=str(cache)))  # into the cache, where render finds the best photo
    argv = ["render", "--layer", LAYER, "--units", "0,1", "--steps", "48", "--size", "128",
            "--device", "cpu", "--settings", str(settings), "--no-cache", "--json"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["layer"] == LAYER
    print({r["unit"]: (r["activation_max"], r["best_dataset_activation"]) for r in doc["units"]})
    for row in doc["units"]:
        assert row["best_dataset_activation"] is not None and row["activation_max"] > 0
        assert row["activation_max"] > row["best_dataset_activation"], row


# -- deletion ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_deleting_a_concept_changes_the_source_by_exactly_its_component(world, loaded):
    from skimage import data as skdata

    from app.engine.analyses.ablation import Ablation, AblationError
    from app.engine.analyses.concepts import ConceptLayer
    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
    from app.engine.runtime.recorder import ActivationRecorder

    _, cache, _, d = world
    dirs = direction_layers(loaded, [LAYER], str(cache))
    x = prepare_batch([frame_to_tensor(im, loaded.device)
                       for im in (skdata.chelsea(), skdata.coffee())], loaded.preprocess)
    intact = source_acts(loaded, [skdata.chelsea(), skdata.coffee()])
    layer = ConceptLayer(d, torch.device("cpu"))
    codes = layer.codes(intact)
    unit = int(codes.amax((0, 2, 3)).argmax())  # a concept present in these photos
    with (torch.no_grad(), Ablation(loaded.module, {LAYER: [unit]}, directions=dirs),
          ActivationRecorder(loaded.module, [SOURCE, "_blocks.9"]) as rec):
        logits = loaded.module(x)
        rec.run(x)
        edited = rec.activations[SOURCE].clone()
    # independent of the hook: the component from the dictionary's own tensors
    h = torch.tensor(d.directions)
    expected = torch.einsum("nhw,c->nchw", codes[:, unit], h[unit])
    assert torch.allclose(intact - edited, expected, atol=1e-5)
    assert float(expected.abs().max()) > 0.1
    with torch.no_grad():
        assert not torch.allclose(loaded.module(x), logits)  # the hook is off again
    with pytest.raises(AblationError, match="no direction set given"):
        Ablation(loaded.module, {LAYER: [0]})


@pytest.mark.slow
def test_predict_ablate_takes_a_concept_layer(capsys, world):
    import app.cli as cli

    photos, _, settings, _ = world
    base = ["predict", str(photos / "chelsea.png"), "--device", "cpu", "--settings",
            str(settings), "--json"]
    assert cli.main([*base, "--ablate", f"{LAYER}:0-{K - 1}"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ablate"] == {LAYER: list(range(K))}
    r = doc["results"][0]
    assert r["top"] != r["ablated_top"]  # every concept gone changes the prediction
    assert r["intact_top1_probability_after"] < r["top"][0]["probability"]
    assert cli.main([*base, "--ablate", f"{LAYER}:{K}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deepvis") or LAYER in err
    assert LAYER in err and err.count("\n") == 1
    assert cli.main([*base, "--ablate", f"{SOURCE}@nmf99:0"]) == 2
    err = capsys.readouterr().err
    assert "no direction layer '_blocks.8@nmf99'" in err and err[-1] == "\n"
    assert err.count("\n") == 1


# -- explain: act × grad in concept space -------------------------------------------------------


@pytest.fixture(scope="module")
def attributor(world, loaded):
    from app.engine.analyses.blocks.layer_attribution import LayerAttributor

    _, cache, _, _ = world
    att = LayerAttributor(loaded)
    att.directions.update(direction_layers(loaded, [LAYER], str(cache)))
    return att


def photo_batch(loaded, name: str) -> torch.Tensor:
    from skimage import data as skdata

    from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch

    img = getattr(skdata, name)()
    rgb = np.dstack([img] * 3) if img.ndim == 2 else img[..., :3]
    return prepare_batch([frame_to_tensor(rgb, loaded.device)], loaded.preprocess)


@pytest.mark.slow
def test_concept_attributions_and_the_residual_add_up_to_the_layer(attributor, loaded):
    from app.engine.analyses.blocks.score import ClassScore

    for name in ("chelsea", "coffee"):
        x = photo_batch(loaded, name)
        concepts = attributor.attribute(x, LAYER, ClassScore())
        channels = attributor.attribute(x, SOURCE, ClassScore(concepts.target))
        total = float(channels.channels.sum())
        got = float(concepts.channels.sum()) + concepts.residual
        assert got == pytest.approx(total, rel=1e-3, abs=1e-3), name
        assert concepts.activations.shape == (K, *channels.activations.shape[1:])
        assert concepts.channels.shape == (K,) and abs(total) > 0.1
        assert (concepts.activations >= 0).all()  # NMF codes


@pytest.mark.slow
def test_deleting_the_top_attributed_concepts_hurts_more_than_random_ones(attributor, loaded):
    """Issue 23's known answer: on most photos the class loses more to its 3 most
    attributed concepts than to 3 random ones (the mean over 5 random draws)."""
    from app.engine.analyses.blocks.score import ClassScore

    wins = []
    for name in ("chelsea", "coffee", "astronaut", "rocket", "cat", "camera"):
        x = photo_batch(loaded, name)
        lin = attributor.attribute(x, LAYER, ClassScore())
        assert lin.target is not None
        top = [int(u) for u in lin.ranked()[:3]]
        rng = np.random.default_rng(0)
        randoms = [sorted(rng.choice(K, 3, replace=False).tolist()) for _ in range(5)]
        p = attributor.deleted_probabilities(x, LAYER, lin.target, [[], top, *randoms])
        assert p[0] == pytest.approx(lin.probability, abs=1e-3)  # nothing deleted: intact
        wins.append(p[1] < p[2:].mean())
    assert sum(wins) >= 4, wins


@pytest.mark.slow
def test_explain_on_a_concept_layer(capsys, world):
    import app.cli as cli

    photos, _, settings, _ = world
    argv = ["explain", str(photos / "chelsea.png"), "--layer", LAYER, "--device", "cpu",
            "--settings", str(settings), "--groups", "2", "--seeds", "2", "--json"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    r = doc["results"][0]
    assert doc["layer"] == LAYER and doc["shape"][0] == K
    assert sorted(e["unit"] for e in r["channels"]) == list(range(K))
    assert isinstance(r["residual_attribution"], float)
    assert cli.main([*argv, "--integrated", "4"]) == 2
    assert "not supported" in capsys.readouterr().err


# -- dissection: concept maps as unit maps -----------------------------------------------


@pytest.mark.slow
def test_dissect_labels_the_concepts_of_a_concept_layer(world, loaded, tmp_path):
    from app.engine.analyses.concepts import ConceptLayer
    from app.engine.analyses.dissection import dissect

    photos, cache, _, d = world
    result = run_job(dissect(loaded, photos, [SOURCE, LAYER], workers=0, batch_size=4,
                             top_k=2, cache_dir=str(cache), out=tmp_path / "dissect"))
    units = result.layers[LAYER].units
    assert [u.unit for u in units] == list(range(K))
    assert len(result.layers[SOURCE].units) == d.channels
    # the thresholds are quantiles of the concept codes, not of the source's channels
    layer = ConceptLayer(d, torch.device("cpu"))
    from skimage import data as skdata

    peaks = np.stack([layer.codes(source_acts(loaded, [
        np.dstack([i] * 3) if i.ndim == 2 else i[..., :3]]))[0].amax((1, 2)).numpy()
        for i in (getattr(skdata, n)() for n in PHOTOS)])
    for u in units:
        assert 0 < u.threshold <= 1.2 * peaks[:, u.unit].max(), u
        assert all(0 <= iou <= 1 for _, iou in u.per_category.values())
    assert result.kind == "colour"
    print(f"\nunits: {sum(u.interpretable for u in result.layers[SOURCE].units)}"
          f"/{d.channels} labelled, concepts: {sum(u.interpretable for u in units)}/{K}")


# -- ablate: curves of a concept layer ------------------------------------------------------------


@pytest.mark.slow
def test_ablate_curves_of_a_concept_layer(capsys, world, loaded):
    import app.cli as cli
    from app.capture.images import read_image
    from app.engine.analyses.ablation import predict_ablated

    photos, cache, settings, _ = world
    argv = ["ablate", str(photos), "--layer", LAYER, "--seeds", "1", "--points", "3",
            "--device", "cpu", "--settings", str(settings), "--no-cache", "--json"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["layer"] == LAYER and doc["units"] == K and doc["deleted"] == [0, K // 2, K]
    assert doc["labels"] == "intact_top1" and doc["images"] == len(PHOTOS)
    curves = [doc["curves"]["random"]["mean"], doc["curves"]["selectivity_high_to_low"]]
    assert all(c[0] == 1.0 for c in curves)  # nothing deleted: the intact top-1 itself
    # every concept deleted: the share of photos whose top-1 survives, as predict measures it
    images = [read_image(str(p), 80_000_000) for p in sorted(photos.iterdir())]
    after = predict_ablated(loaded, images, {LAYER: list(range(K))}, top_k=1,
                            directions=direction_layers(loaded, [LAYER], str(cache)))
    kept = np.mean([a.intact[0].index == a.ablated[0].index for a in after])
    assert all(c[-1] == pytest.approx(kept) for c in curves) and kept < 1
