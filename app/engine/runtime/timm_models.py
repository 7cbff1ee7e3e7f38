"""timm models by name, `timm:NAME` (pretrained) and `timm:NAME:PATH` (a local checkpoint).

timm is an optional extra (`pip install deepvis-live[timm]`): this module imports it only
when such a model is asked for, so the app works without it. Pretrained weights come from
timm's own hub (cached by huggingface_hub); without a network that is one ModelError line,
and a checkpoint file needs no network at all. Models that take it are built with
`dynamic_img_size=True` (ViTs), so renders at other sizes work as for torchvision's ViT.
The preprocessing is timm's own data config: input size, crop fraction, mean and std.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from app.core.settings import ModelSettings
from app.engine.runtime.preprocess import Preprocess

PREFIX = "timm:"
INSTALL_HINT = "pip install deepvis-live[timm]"


class TimmError(RuntimeError):
    """One line for the user (models.py turns it into a ModelError)."""


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise TimmError(f"timm models need the timm package: {INSTALL_HINT}") from None
    return timm


def parse(spec: str) -> tuple[str, Path | None]:
    """`timm:NAME[:PATH]` → (NAME, PATH or None)."""
    name, _, path = spec[len(PREFIX):].partition(":")
    if not name:
        raise TimmError(f"no timm model named in {spec!r}: use timm:NAME or timm:NAME:PATH")
    return name, Path(path).expanduser() if path else None


def check(spec: str) -> None:
    """Cheap up-front check of a timm spec: timm present, the name known, the file there."""
    name, path = parse(spec)
    timm = _timm()
    if not timm.is_model(name):
        raise TimmError(f"timm has no model {name!r} (see timm.list_models())")
    if path is not None and not path.is_file():
        raise TimmError(f"checkpoint not found: {path}")


def _create(timm: Any, name: str, **kwargs: Any) -> nn.Module:
    try:  # a ViT then takes any input size (renders); other families have no such flag
        return timm.create_model(name, dynamic_img_size=True, **kwargs)
    except TypeError:
        return timm.create_model(name, **kwargs)


def _state_of(path: Path) -> dict[str, object]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TimmError(f"{path} is not a readable state_dict: {_first_line(exc)}") from None
    for key in ("state_dict", "model", "state_dict_ema"):  # common training wrappers
        inner = state.get(key) if isinstance(state, dict) else None
        if isinstance(inner, dict):
            state = inner
            break
    if not isinstance(state, dict):
        raise TimmError(f"{path} holds no state_dict")
    return state


def build(spec: str, settings: ModelSettings,
          describe_mismatch: Callable[[dict[str, torch.Tensor], dict[str, object]], str],
          ) -> tuple[nn.Module, Preprocess, Path | None]:
    """(model in eval mode, its preprocessing, the checkpoint file or None) for a spec;
    `describe_mismatch(expected, given)` says in one line how a checkpoint does not fit
    (models.state_mismatch, passed in: models imports this module)."""
    check(spec)
    timm = _timm()
    name, path = parse(spec)
    if path is not None:
        state = _state_of(path)
        probe = _create(timm, name, pretrained=False)
        cfg: dict[str, Any] = dict(getattr(probe, "default_cfg", {}) or {})
        head = f"{cfg.get('classifier', 'head')}.weight"
        weight = state.get(head)
        classes = weight.shape[0] if isinstance(weight, torch.Tensor) else None
        model = probe if classes in (None, probe.num_classes) else _create(
            timm, name, pretrained=False, num_classes=classes)
        mismatch = describe_mismatch(model.state_dict(), dict(state))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise TimmError(f"{path} does not fit timm:{name}: "
                            f"{mismatch or _first_line(exc)}") from None
    else:
        if not settings.allow_download:
            raise TimmError(f"timm:{name} needs its pretrained weights and downloads are off "
                            f"([model].allow_download); use timm:{name}:PATH for a local file")
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(settings.download_timeout_s)
        try:
            model = _create(timm, name, pretrained=True)
        except Exception as exc:
            raise TimmError(
                f"cannot get the pretrained weights of timm:{name} ({_first_line(exc)}); "
                f"connect to a network once, or use timm:{name}:PATH for a local checkpoint"
            ) from None
        finally:
            socket.setdefaulttimeout(old)
    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    pre = Preprocess(size, float(cfg.get("crop_pct", 0.875)), tuple(cfg["mean"]),
                     tuple(cfg["std"]))
    return model.eval(), pre, path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
