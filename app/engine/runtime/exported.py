"""torch.export programs (`.pt2`) as ordinary modules: names, hooks and copies come back.

`torch.export.unflatten` rebuilds the module tree of an exported program, so
`named_modules()` has the original dotted names and forward hooks fire on them as on the
Python model; every analysis then works unchanged. Two things need care:

- Safety. A `.pt2` archive may carry pickled weights, constants or opaque objects, and
  torch's loader retries some payloads with `weights_only=False`. We open
  the archive first and refuse any pickled payload, and force torch.load to weights_only
  for the process (`TORCH_FORCE_WEIGHTS_ONLY_LOAD`, which our own loads already are).
- Copies. The graph's nodes keep fake tensors with symbolic shapes in their metadata, which
  `copy.deepcopy` (every analysis's private copy) cannot copy; running never reads them, so
  they are dropped after loading.

A program exported for one input shape cannot take the batches and sizes the analyses use;
`EXPORT_HINT` is the export call that makes batch, height and width dynamic.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import torch
from torch import nn

EXPORT_HINT = ("torch.export.save(torch.export.export(model, (torch.zeros(2, 3, 224, 224),), "
               "dynamic_shapes=({0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO},)), 'model.pt2')")
_NODE_META = ("val", "example_value", "tensor_meta", "unbacked_bindings")


class ExportError(ValueError):
    """A `.pt2` file that is not safe or not loadable; one line for the user."""


def archive_kind(path: Path) -> str:
    """"export" (torch.export), "torchscript", "state" (a torch.save zip) or "other"."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return "other"
    if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
        return "export"
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    return "state" if any(n.endswith("data.pkl") for n in names) else "other"


def check_no_pickles(path: Path) -> None:
    """ExportError if the archive holds any payload that loading it would unpickle."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if not name.endswith("_config.json") or "/data/" not in name:
                continue
            try:
                config = json.loads(archive.read(name)).get("config", {})
            except (ValueError, AttributeError):
                raise ExportError(f"{path}: unreadable {name}") from None
            for key, payload in config.items():
                pickled = payload.get("use_pickle", False)
                kind = str(payload.get("path_name", ""))
                if pickled or kind.startswith(("custom_obj", "opaque_obj")):
                    raise ExportError(
                        f"{path} stores {key!r} as a pickled object, which is refused "
                        "(it could run arbitrary code)")


def load_exported(path: Path) -> nn.Module:
    """The unflattened module of the program at `path`, on the CPU, in eval mode."""
    check_no_pickles(path)
    # the loader retries some payloads with weights_only=False; we never allow that
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        program = torch.export.load(str(path))
        module = torch.export.unflatten(program)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise ExportError(f"{path} is not a loadable torch.export program: "
                          f"{text[0] if text else type(exc).__name__}") from None
    for sub in module.modules():
        graph = getattr(sub, "graph", None)
        if isinstance(graph, torch.fx.Graph):
            for node in graph.nodes:
                for key in _NODE_META:
                    node.meta.pop(key, None)
    return module.eval()
