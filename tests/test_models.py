"""Model loading: torchvision names offline, user checkpoints, and refusals."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torchvision.models import googlenet, resnet18

from app.core.settings import ModelSettings
from app.engine.runtime import models
from app.engine.runtime.models import ModelError, check_model_spec, load_model

CPU = torch.device("cpu")


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no network: a download fails as it would offline."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url, dst, *a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub"


def test_torchvision_model_offline_gives_one_clear_line(empty_hub):
    with pytest.raises(ModelError) as err:
        load_model("resnet18", CPU, ModelSettings())
    text = str(err.value)
    assert "resnet18" in text and "cannot download" in text and "\n" not in text
    assert not list(empty_hub.rglob("*.part"))  # nothing half-written left behind


def test_downloads_off_in_settings(empty_hub):
    with pytest.raises(ModelError, match="downloads are off"):
        load_model("vgg16", CPU, ModelSettings(allow_download=False))


def test_torchvision_model_loads_from_the_cache(empty_hub):
    # a cached file stands in for the first download (random weights: mechanics only)
    url = models.get_model_weights("resnet18").DEFAULT.url
    path = empty_hub / "checkpoints" / url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    torch.save(resnet18(weights=None).state_dict(), path)
    loaded = load_model("resnet18", CPU, ModelSettings())
    assert loaded.num_classes == 1000 and loaded.class_names[281] == "tabby"
    assert loaded.preprocess.size == 224 and loaded.preprocess.crop_fraction == 224 / 256
    assert not loaded.module.training
    assert next(c for c in models.model_choices() if c.name == "resnet18").offline


def test_state_dict_checkpoint_with_named_architecture(tmp_path):
    net = resnet18(weights=None, num_classes=10)
    path = tmp_path / "mine.pth"
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, path)
    loaded = load_model(f"resnet18:{path}", CPU, ModelSettings())
    assert loaded.num_classes == 10 and loaded.class_names[3] == "class 3"
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded.module(x), net.eval()(x))


def test_state_dict_for_the_wrong_architecture_is_refused(tmp_path):
    path = tmp_path / "g.pth"
    torch.save(googlenet(weights=None, aux_logits=False, init_weights=False).state_dict(), path)
    with pytest.raises(ModelError, match="does not fit resnet18"):
        load_model(f"resnet18:{path}", CPU, ModelSettings())


def _small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(6, 7)).eval()


def _export(net: torch.nn.Module, path, dynamic: bool = True):
    from torch.export import Dim

    shapes = ({0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO},) if dynamic else None
    program = torch.export.export(net, (torch.zeros(2, 3, 224, 224),), dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    return path


def test_torchscript_is_refused_in_one_line_with_the_way_out(tmp_path):
    path = tmp_path / "net.pt"
    torch.jit.script(_small_net()).save(str(path))
    with pytest.raises(ModelError) as exc:
        load_model(str(path), CPU, ModelSettings())
    text = str(exc.value)
    assert "TorchScript" in text and "torch.export.save" in text and "ARCH:PATH" in text
    assert "\n" not in text


def test_a_torch_export_program_is_the_same_model_with_its_names_and_hooks(tmp_path):
    from app.engine.runtime.recorder import ActivationRecorder, discover_layers

    net = _small_net()
    loaded = load_model(str(_export(net, tmp_path / "net.pt2")), CPU, ModelSettings())
    assert loaded.num_classes == 7 and loaded.name == "net.pt2"
    mine, _ = discover_layers(loaded.module, 224, CPU)
    theirs, _ = discover_layers(net, 224, CPU)
    assert [(i.name, i.shape) for i in mine] == [(i.name, i.shape) for i in theirs]
    assert mine[0].kind == "exported conv2d"
    x = torch.rand(3, 3, 96, 128)  # another batch and size than the export's example
    with ActivationRecorder(loaded.module, ["2"]) as rec, torch.no_grad():
        out = rec.run(x, loaded.module)
        torch.testing.assert_close(rec.activations["2"], net[:3](x))
    torch.testing.assert_close(out, net(x))


class BatchInShape(torch.nn.Module):
    """Reads its batch size from the input: exported statically, that size is baked in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.fc = torch.nn.Linear(6, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)).reshape(x.shape[0], -1))


def test_a_program_exported_for_one_shape_says_how_to_export_it(tmp_path):
    path = _export(BatchInShape().eval(), tmp_path / "static.pt2", dynamic=False)
    with pytest.raises(ModelError, match=r"dynamic_shapes=.*Dim\.AUTO"):
        load_model(str(path), CPU, ModelSettings())


def test_a_program_with_a_pickled_payload_is_refused_unread(tmp_path):
    import json
    import zipfile

    path = _export(_small_net(), tmp_path / "net.pt2")
    tampered = tmp_path / "tampered.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("model_weights_config.json"):
                doc = json.loads(data)
                first = next(iter(doc["config"]))
                doc["config"][first]["use_pickle"] = True  # would go to torch.load(pickle)
                data = json.dumps(doc).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelError, match="pickled object, which is refused"):
        load_model(str(tampered), CPU, ModelSettings())


def test_bare_state_dict_asks_for_its_architecture(tmp_path):
    path = tmp_path / "sd.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    with pytest.raises(ModelError, match="name its architecture"):
        load_model(str(path), CPU, ModelSettings())


class Pickled(torch.nn.Module):
    def forward(self, x):
        return x


def test_pickled_whole_model_is_never_unpickled(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(Pickled(), path)  # a full pickle: loading it could run arbitrary code
    with pytest.raises(ModelError, match="refused"):
        load_model(str(path), CPU, ModelSettings())


def test_check_model_spec(tmp_path):
    check_model_spec("efficientnet_lite0")
    check_model_spec("googlenet")
    with pytest.raises(ModelError, match="unknown model"):
        check_model_spec("resnet18:/no/such/file.pth")
    with pytest.raises(ModelError, match="unknown model"):
        check_model_spec("not_a_model")


@pytest.mark.parametrize("arch", ["googlenet", "mobilenet_v3_large", "vgg11", "alexnet"])
def test_non_sequential_torchvision_nets_record_their_layers(arch):
    from torchvision.models import get_model

    from app.engine.runtime.recorder import default_layer, discover_layers

    kwargs = {"aux_logits": False, "init_weights": False} if arch == "googlenet" else {}
    net = get_model(arch, weights=None, **kwargs).eval()  # random weights: mechanics only
    layers, _ = discover_layers(net, 96 if arch != "alexnet" else 128, CPU)
    assert len(layers) > 10
    assert all(len(i.shape) == 3 for i in layers)
    assert default_layer(layers) in {i.name for i in layers}


@pytest.mark.parametrize(("saved", "holds"), [
    (torch.randn(3, 4), "a tensor (3×4)"),
    (torch.tensor(2.0), "a scalar tensor"),
    ([1, 2], "a list of 2 items"),
    ({"epoch": 3}, "a dict of 1 entry, none a tensor"),
])
def test_a_file_that_is_no_checkpoint_is_said_to_hold_what_it_holds(tmp_path, saved, holds):
    path = tmp_path / "x.pt"
    torch.save(saved, path)
    # with an architecture, and without: both say the same of the file
    with pytest.raises(ModelError) as named:
        load_model(f"resnet18:{path}", CPU, ModelSettings())
    assert str(named.value) == f"{path} holds {holds}, not a state_dict"
    with pytest.raises(ModelError) as bare:
        load_model(str(path), CPU, ModelSettings())
    assert str(bare.value).startswith(f"{path} holds {holds}, not a model: ")
    assert "is a state_dict" not in str(bare.value)
