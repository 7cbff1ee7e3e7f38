"""A `LiveBackend` made of numpy: real photo, plausible activations, every call recorded.

The activations are random non-negative mixtures of colour and edge maps of the photo, so
tiles look like a CNN's (edges, colour blobs, mostly dark) and each unit's map is exact and
known: `activations(layer)[unit]`.
"""

from __future__ import annotations

import zlib
from functools import cache
from pathlib import Path

import numpy as np

from app.core.backend import Event
from app.core.messages import (
    Frame,
    LayerInfo,
    ModelChoice,
    ModelReady,
    Normalization,
    Notice,
    NoticeLevel,
    Prediction,
    Result,
    SourceReady,
    ViewState,
)
from app.core.tiling import GridGeometry, grid_geometry, normalize_channels, tile_channels

LAYERS: tuple[LayerInfo, ...] = (
    LayerInfo("_conv_stem", (32, 112, 112), "Conv2d"),
    LayerInfo("_blocks.1._project_conv", (24, 56, 56), "Conv2d"),
    LayerInfo("_blocks.3._expand_conv", (144, 56, 56), "Conv2d"),
    LayerInfo("_blocks.5._depthwise_conv", (240, 28, 28), "Conv2d"),
    LayerInfo("_blocks.10._project_conv", (112, 14, 14), "Conv2d"),
    LayerInfo("_blocks.15._depthwise_conv", (1152, 7, 7), "Conv2d"),
    LayerInfo("_conv_head", (1280, 7, 7), "Conv2d"),
)
DEFAULT_LAYER = "_blocks.5._depthwise_conv"
PREDICTIONS = (
    Prediction(285, "Egyptian cat", 0.612),
    Prediction(281, "tabby, tabby cat", 0.204),
    Prediction(282, "tiger cat", 0.117),
    Prediction(287, "lynx, catamount", 0.031),
    Prediction(283, "Persian cat", 0.012),
)


@cache
def photo() -> np.ndarray:
    """A real RGB photo (scikit-image's `chelsea`, 300×451), read-only."""
    from skimage import data

    image = np.ascontiguousarray(data.chelsea(), dtype=np.uint8)
    image.setflags(write=False)
    return image


def centre_crop(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    side = min(h, w)
    return (w - side) // 2, (h - side) // 2, side, side


def _resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Area-ish downsampling by averaging the pixels that map to each output cell."""
    ys = np.linspace(0, image.shape[0], h + 1).astype(int)
    xs = np.linspace(0, image.shape[1], w + 1).astype(int)
    rows = np.add.reduceat(image, ys[:-1], axis=0) / np.diff(ys)[:, None, None]
    return np.add.reduceat(rows, xs[:-1], axis=1) / np.diff(xs)[None, :, None]


@cache
def activations(layer: str, seed: int = 0) -> np.ndarray:
    """(C, H, W) float32 non-negative maps for `layer`, computed from the photo."""
    info = next(i for i in LAYERS if i.name == layer)
    c, h, w = info.shape
    x, y, side, _ = centre_crop(photo().shape)
    rgb = _resize(photo()[y : y + side, x : x + side].astype(np.float32) / 255.0, h, w)
    gray = rgb.mean(axis=2)
    dy, dx = np.gradient(gray)
    lap = np.gradient(dy, axis=0) + np.gradient(dx, axis=1)
    base = np.stack(
        [
            rgb[..., 0], rgb[..., 1], rgb[..., 2], gray, dx, dy, np.hypot(dx, dy), lap,
            rgb[..., 0] - rgb[..., 1], rgb[..., 2] - gray,
        ]
    )
    base = (base - base.mean(axis=(1, 2), keepdims=True)) / (
        base.std(axis=(1, 2), keepdims=True) + 1e-6
    )
    rng = np.random.default_rng(zlib.crc32(layer.encode()) + seed)  # stable across runs
    weights = rng.normal(size=(c, base.shape[0])).astype(np.float32)
    bias = rng.normal(-0.8, 0.5, size=(c, 1, 1)).astype(np.float32)
    acts = np.maximum(np.tensordot(weights, base, axes=1) + bias, 0.0).astype(np.float32)
    acts *= rng.uniform(0.5, 4.0, size=(c, 1, 1)).astype(np.float32)
    acts.setflags(write=False)
    return acts


def make_result(
    layer: str = DEFAULT_LAYER,
    unit: int = 0,
    normalization: Normalization = Normalization.PER_CHANNEL,
    frozen: bool = False,
    seq: int = 0,
    aspect: float = 1.0,
) -> Result:
    """A complete `Result` for `layer` as the engine would send it."""
    acts = activations(layer)
    c, h, w = acts.shape
    unit = min(max(unit, 0), c - 1)
    geometry: GridGeometry = grid_geometry(c, h, w, aspect=aspect)
    per_channel = normalization == Normalization.PER_CHANNEL
    mosaic = tile_channels(normalize_channels(acts, per_channel), geometry)
    frame = Frame(image=photo(), index=0, timestamp=float(seq), source="chelsea.png")
    return Result(
        seq=seq,
        frame=frame,
        crop=centre_crop(photo().shape),
        layer=layer,
        geometry=geometry,
        mosaic=mosaic,
        unit=unit,
        unit_map=np.array(acts[unit]),
        unit_max=acts.max(axis=(1, 2)),
        unit_mean=acts.mean(axis=(1, 2)),
        predictions=PREDICTIONS,
        latency_ms=38.4,
        compute_ms=21.7,
        fps=29.6,
        dropped_frames=3,
        device="cpu",
        model="efficientnet_lite0",
        frozen=frozen,
    )


class FakeBackend:
    """Implements `LiveBackend`; queues a ModelReady and a SourceReady at start."""

    def __init__(self, ready: bool = True, live: bool = True) -> None:
        self.calls: list[tuple[str, object]] = []
        self.views: list[ViewState] = []
        self.stop_calls = 0
        self.live = live  # False: a result only after a view change (like a still image)
        self.results_made = 0
        self._events: list[Event] = []
        self._view = ViewState()
        self._model_ready = False
        self._dirty = True
        self._folder_position = 0
        if ready:
            self._events.append(self.model_ready())
            self._events.append(SourceReady("chelsea.png", "image", 1, 0))

    @staticmethod
    def model_ready(name: str = "efficientnet_lite0") -> ModelReady:
        return ModelReady(name, LAYERS, DEFAULT_LAYER, "cpu", 1000)

    def emit(self, event: Event) -> None:
        """Queue an event for the next `poll_events` (tests use it to inject notices)."""
        self._events.append(event)

    # --- LiveBackend

    def poll_result(self) -> Result | None:
        if not self._model_ready:
            return None
        if (self._view.frozen or not self.live) and not self._dirty:
            return None
        self._dirty = False
        self.results_made += 1
        v = self._view
        return make_result(
            v.layer or DEFAULT_LAYER, v.unit, v.normalization, v.frozen, self.results_made
        )

    def poll_events(self) -> list[Event]:
        events, self._events = self._events, []
        if any(isinstance(e, ModelReady) for e in events):
            self._model_ready = True
        return events

    def set_view(self, view: ViewState) -> None:
        self.calls.append(("set_view", view))
        self.views.append(view)
        self._view = view
        self._dirty = True

    def open_source(self, spec: str) -> None:
        self.calls.append(("open_source", spec))
        path = Path(spec)
        if spec.startswith("camera:"):
            self._events.append(Notice(f"no camera at index {spec[7:]}", NoticeLevel.ERROR))
            return
        kind = "folder" if path.is_dir() else "image"
        self._events.append(SourceReady(path.name, kind, 3 if kind == "folder" else 1, 0))

    def step_source(self, delta: int) -> None:
        self.calls.append(("step_source", delta))
        self._folder_position += delta

    def set_mirror(self, mirror: bool) -> None:
        self.calls.append(("set_mirror", mirror))

    def load_model(self, spec: str) -> None:
        self.calls.append(("load_model", spec))
        if spec == "broken":
            self._events.append(Notice("cannot load model 'broken'", NoticeLevel.ERROR))
        else:
            self._events.append(self.model_ready(spec))

    def model_choices(self) -> list[ModelChoice]:
        return [
            ModelChoice("efficientnet_lite0", "EfficientNet-Lite0, ImageNet (bundled)", True),
            ModelChoice("resnet18", "torchvision ResNet-18, ImageNet weights", False),
            ModelChoice("googlenet", "torchvision GoogLeNet (Inception v1)", False),
        ]

    def stop(self) -> None:
        self.calls.append(("stop", None))
        self.stop_calls += 1

    # --- helpers for assertions

    def called(self, name: str) -> list[object]:
        return [arg for n, arg in self.calls if n == name]
