"""Where results that outlive a session go (scans, renders, ablation curves)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from platformdirs import user_cache_dir

from app.core.files import safe_filename
from app.engine.runtime.models import LoadedModel

CACHE_FORMAT = 1  # bump when any cached file's layout changes


def cache_root(configured: str = "") -> Path:
    """`[cache].dir` from settings when set, else the user's cache folder."""
    return Path(configured).expanduser() if configured else Path(user_cache_dir("deepvis"))


def model_key(loaded: LoadedModel) -> str:
    """Names a model, its exact weights and its preprocessing: a folder name for caches."""
    pre = loaded.preprocess
    spec = json.dumps([pre.size, pre.crop_fraction, list(pre.mean), list(pre.std)])
    pre_digest = hashlib.sha256(spec.encode()).hexdigest()[:8]
    return f"{safe_filename(loaded.name)}-{loaded.weights_digest()}-{pre_digest}"
