"""Run-time device choice: never at import."""

from __future__ import annotations

import torch


class DeviceError(RuntimeError):
    pass


def pick_device(name: str = "auto") -> torch.device:
    """`auto` prefers cuda, then mps, then cpu; an explicit device must be available."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda: no CUDA device is available here (try --device auto)")
        return torch.device(name)
    if name == "mps":
        if not mps_ok:
            raise DeviceError("--device mps: Apple's MPS is not available here (try --device auto)")
        return torch.device("mps")
    raise DeviceError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
