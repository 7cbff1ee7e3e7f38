"""`settings.toml` → frozen dataclasses. Unknown keys and bad values are errors naming the key."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A settings file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class SourceSettings:
    # "auto": camera 0 when one opens, else the bundled sample video.
    # Otherwise "camera:N", or a path to a video, an image or a folder of images.
    default: str = "auto"
    camera_width: int = 640
    camera_height: int = 480
    camera_fps: int = 30
    mirror: bool = True  # mirror camera frames, as people expect of a webcam
    reconnect_interval_s: float = 1.0
    video_loop: bool = True
    max_image_pixels: int = 80_000_000  # refuse bigger images instead of exhausting memory
    max_frame_side: int = 1280  # larger frames are downscaled once, on capture


@dataclass(frozen=True)
class ModelSettings:
    default: str = "efficientnet_lite0"
    device: str = "auto"  # auto | cpu | cuda | mps
    allow_download: bool = True  # torchvision weights on first use, where a network exists
    download_timeout_s: float = 20.0
    # torch's CPU threads for the whole app (live loop and jobs); 0 = torch's default (the
    # cores). On a 2-vCPU virtual machine 1 thread ran the live frame 2.2x faster than 2
    # (docs/benchmarks.md): waking a sleeping OpenMP thread there costs more than it gives
    threads: int = 0


@dataclass(frozen=True)
class ViewSettings:
    layer: str = ""  # "" = the model's default layer (a middle one)
    unit: int = 0
    normalization: str = "per_channel"  # per_channel | per_layer
    colormap: str = "viridis"
    overlay_opacity: float = 0.55
    top_k: int = 5


@dataclass(frozen=True)
class GuiSettings:
    refresh_ms: int = 15
    width: int = 1560
    height: int = 940


@dataclass(frozen=True)
class BenchSettings:
    frames: int = 40
    warmup: int = 10
    size: int = 224
    threads: int = 0  # 0 = torch's default


@dataclass(frozen=True)
class CacheSettings:
    dir: str = ""  # "" = the user's cache folder (platformdirs)


@dataclass(frozen=True)
class ScanSettings:
    # layers scanned when --layers is not given; names missing from a model are skipped
    layers: tuple[str, ...] = ("_blocks.4", "_blocks.8", "_blocks.11", "_blocks.15")
    top_k: int = 9
    batch_size: int = 32
    workers: int = 2  # DataLoader processes decoding images
    crop_size: int = 96  # side of the stored receptive-field crops, pixels
    checkpoint_every: int = 20  # batches between resumable checkpoints


@dataclass(frozen=True)
class RenderSettings:
    preset: str = "fast"  # fast | lucid | yosinski2015 | maco (app/engine/featurevis/presets.py)
    steps: int = 0  # 0 = the preset's own
    size: int = 0  # 0 = the preset's own
    seed: int = 0
    batch_size: int = 16  # units optimized together (whole-layer renders go in such chunks)


@dataclass(frozen=True)
class AblateSettings:
    seeds: int = 3  # random orders averaged for the random curve
    points: int = 11  # fractions 0, 0.1, …, 1
    batch_size: int = 32


@dataclass(frozen=True)
class BlocksSettings:
    dictionary_top: int = 4  # channels shown per position (semantic dictionary)
    groups: int = 6  # NMF neuron groups per frame
    integrated_steps: int = 100  # path-integrated attribution steps (Building Blocks' N)


@dataclass(frozen=True)
class DissectSettings:
    quantile: float = 0.005  # a unit's mask: its top 0.5 % of activations (NetDissect)
    min_iou: float = 0.04  # IoU above which a unit counts as a detector of its concept
    batch_size: int = 32
    top_k: int = 4  # top images drawn with the unit's mask, per unit
    # disk for unit maps and labels kept between the passes: one decode and forward (0: two)
    spool_gb: float = 4.0


@dataclass(frozen=True)
class Settings:
    source: SourceSettings = field(default_factory=SourceSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    view: ViewSettings = field(default_factory=ViewSettings)
    gui: GuiSettings = field(default_factory=GuiSettings)
    bench: BenchSettings = field(default_factory=BenchSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    scan: ScanSettings = field(default_factory=ScanSettings)
    render: RenderSettings = field(default_factory=RenderSettings)
    ablate: AblateSettings = field(default_factory=AblateSettings)
    dissect: DissectSettings = field(default_factory=DissectSettings)
    blocks: BlocksSettings = field(default_factory=BlocksSettings)


# the names of app/engine/featurevis/presets.py PRESETS (a test keeps them equal)
RENDER_PRESETS = ("fast", "lucid", "yosinski2015", "fooling", "maco")
_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("model", "device"): ("auto", "cpu", "cuda", "mps"),
    ("view", "normalization"): ("per_channel", "per_layer"),
    ("view", "colormap"): ("viridis", "inferno", "magma", "gray", "jet", "coolwarm"),
    ("render", "preset"): RENDER_PRESETS,
}
MAX_RENDER_SIZE = 1024  # px per side: a batch of 16 larger images outgrows a laptop's memory
_POSITIVE = {
    ("source", "camera_width"), ("source", "camera_height"), ("source", "camera_fps"),
    ("source", "max_image_pixels"), ("source", "max_frame_side"), ("gui", "refresh_ms"),
    ("gui", "width"), ("gui", "height"), ("bench", "frames"), ("bench", "size"),
    ("view", "top_k"), ("model", "download_timeout_s"), ("source", "reconnect_interval_s"),
    ("scan", "top_k"), ("scan", "batch_size"), ("ablate", "seeds"), ("ablate", "points"),
    ("ablate", "batch_size"), ("render", "batch_size"), ("dissect", "batch_size"),
    ("blocks", "dictionary_top"), ("blocks", "groups"), ("blocks", "integrated_steps"),
}


def _check_value(where: str, section: str, key: str, value: Any, expected: Any) -> Any:
    name = f"{where}: [{section}].{key}"
    if typing.get_origin(expected) is tuple:  # lists of strings, e.g. [scan].layers
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{name} must be a list of strings, got {value!r}")
        return tuple(value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (expected is int and isinstance(value, bool)) or not isinstance(value, expected):
        raise SettingsError(f"{name} must be {expected.__name__}, got {value!r}")
    choices = _CHOICES.get((section, key))
    if choices and value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    if (section, key) in _POSITIVE and value <= 0:
        raise SettingsError(f"{name} must be positive, got {value!r}")
    if key in ("unit", "warmup", "threads", "workers", "steps", "size", "top_k") and value < 0:
        raise SettingsError(f"{name} must not be negative, got {value!r}")
    if (section, key) == ("render", "size") and not (value == 0 or 16 <= value <= MAX_RENDER_SIZE):
        raise SettingsError(
            f"{name} must be 0 (the preset's) or 16 to {MAX_RENDER_SIZE} pixels, got {value!r}")
    if (section, key) == ("dissect", "quantile") and not 0.0 < value < 1.0:
        raise SettingsError(f"{name} must be between 0 and 1 (exclusive), got {value!r}")
    if (section, key) == ("dissect", "spool_gb") and value < 0:
        raise SettingsError(f"{name} must not be negative, got {value!r}")
    if (section, key) == ("dissect", "min_iou") and not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name} must be between 0 and 1, got {value!r}")
    if key == "overlay_opacity" and not 0.0 <= value <= 1.0:
        raise SettingsError(f"{name} must be between 0 and 1, got {value!r}")
    return value


def settings_from_dict(data: dict[str, Any], where: str = "settings") -> Settings:
    """Validate a parsed TOML document against the defaults."""
    sections = {f.name: f for f in dataclasses.fields(Settings)}
    built: dict[str, Any] = {}
    for section, values in data.items():
        if section not in sections:
            raise SettingsError(f"{where}: unknown section [{section}]")
        if not isinstance(values, dict):
            raise SettingsError(f"{where}: [{section}] must be a table")
        cls = typing.get_type_hints(Settings)[section]
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, value in values.items():
            if key not in hints:
                raise SettingsError(f"{where}: unknown key [{section}].{key}")
            expected = hints[key]
            if isinstance(expected, types.UnionType):  # pragma: no cover - no optional keys yet
                expected = typing.get_args(expected)[0]
            kwargs[key] = _check_value(where, section, key, value, expected)
        built[section] = cls(**kwargs)
    return Settings(**built)


def load_settings(path: str | Path | None) -> Settings:
    """Read `path` (None: built-in defaults). Raises SettingsError with a one-line reason."""
    if path is None:
        return Settings()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"settings file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {p}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{p}: not valid TOML: {exc}") from None
    return settings_from_dict(data, where=str(p))


def with_overrides(settings: Settings, section: str, **changes: Any) -> Settings:
    """A copy of `settings` with keys of one section replaced (command-line flags)."""
    current = getattr(settings, section)
    return dataclasses.replace(settings, **{section: dataclasses.replace(current, **changes)})
