"""Where results that outlive a session go (scans, renders, ablation curves)."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from platformdirs import user_cache_dir

from app.core.files import safe_filename
from app.engine.runtime.models import LoadedModel

CACHE_FORMAT = 1  # bump when any cached file's layout changes


def cache_root(configured: str = "") -> Path:
    """`[cache].dir` from settings when set, else the user's cache folder."""
    return Path(configured).expanduser() if configured else Path(user_cache_dir("deepvis"))


class CacheError(ValueError):
    """The cache folder cannot be written: one line, naming the setting that chose it."""


def writable_cache(configured: str = "") -> Path:
    """`cache_root(configured)`, made and tried with a temporary file before an analysis
    spends minutes on a result it could not store; CacheError (one line, naming
    `[cache].dir`) if it cannot be written."""
    root = cache_root(configured)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as exc:
        chosen = ("set by [cache].dir in settings.toml" if configured else
                  "the user's cache folder; choose another with [cache].dir in settings.toml")
        reason = exc.strerror or type(exc).__name__
        raise CacheError(f"cannot write to the cache folder {root} ({chosen}): "
                         f"{reason}") from None
    return root


def model_key(loaded: LoadedModel) -> str:
    """Names a model, its exact weights and its preprocessing: a folder name for caches."""
    pre = loaded.preprocess
    spec = json.dumps([pre.size, pre.crop_fraction, list(pre.mean), list(pre.std)])
    pre_digest = hashlib.sha256(spec.encode()).hexdigest()[:8]
    return f"{safe_filename(loaded.name)}-{loaded.weights_digest()}-{pre_digest}"
