"""A `LiveBackend` made of numpy: real photo, plausible activations, every call recorded.

The activations are random non-negative mixtures of colour and edge maps of the photo, so
tiles look like a CNN's (edges, colour blobs, mostly dark) and each unit's map is exact and
known: `activations(layer)[unit]`.

The analyses are faked the same way: attribution maps derived from the photo, dataset
patches cropped from real photos written to a folder (`write_photos`), preferred images,
job progress and ablation curves are plain numpy, and every call is recorded.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from app.core.backend import Event
from app.core.messages import (
    AblationCurves,
    AttributionMode,
    ConceptNames,
    ConceptUnit,
    Frame,
    FrameImage,
    GroupIcons,
    IntegratedExplanation,
    LayerConcepts,
    LayerInfo,
    LayersChanged,
    ModelChoice,
    ModelFailed,
    ModelReady,
    Normalization,
    Notice,
    NoticeLevel,
    Patch,
    PatchAttributions,
    Prediction,
    PreferredGrid,
    PreferredImage,
    PreferredVariant,
    ReportWritten,
    SourceFailed,
    SourceReady,
    UnitFacts,
    UnitIcons,
    UnitPatches,
)
from app.core.requests import (
    AblationRequest,
    AccentuateRequest,
    ActivationGridRequest,
    AuditRequest,
    ClassUnitsRequest,
    ConceptNamesRequest,
    ConceptsRequest,
    DissectRequest,
    GroupIconsRequest,
    IntegratedRequest,
    InvertRequest,
    JobEvent,
    JobState,
    LayerConceptsRequest,
    PreferredGridRequest,
    PreferredImageRequest,
    RenameConceptRequest,
    RenderLayerRequest,
    Request,
    ScanRequest,
    TcavRequest,
    UnitCardRequest,
    UnitIconsRequest,
)
from app.core.results import (
    AttentionRecord,
    AttributionRecord,
    BuildingBlocks,
    DeletionRecord,
    LiveTopRecord,
    Result,
)
from app.core.tiling import GridGeometry, grid_geometry, normalize_channels
from app.core.view import (
    AttentionView,
    AttributionView,
    BlocksView,
    DeletionView,
    ViewState,
)
from tests.tiling_reference import tile_channels

LAYERS: tuple[LayerInfo, ...] = (
    LayerInfo("_conv_stem", (32, 112, 112), "Conv2d"),
    LayerInfo("_blocks.1._project_conv", (24, 56, 56), "Conv2d"),
    LayerInfo("_blocks.3._expand_conv", (144, 56, 56), "Conv2d"),
    LayerInfo("_blocks.5._depthwise_conv", (240, 28, 28), "Conv2d"),
    LayerInfo("_blocks.10._project_conv", (112, 14, 14), "Conv2d"),
    LayerInfo("_blocks.15._depthwise_conv", (1152, 7, 7), "Conv2d"),
    LayerInfo("_conv_head", (1280, 7, 7), "Conv2d"),
    LayerInfo("logits", (1000, 1, 1), "output"),
)
DEFAULT_LAYER = "_blocks.5._depthwise_conv"


def layer_info(name: str) -> LayerInfo:
    """A layer of `LAYERS`, or a concept layer of one (`SOURCE@nmfK`: K maps of its size)."""
    source, at, method_k = name.partition("@")
    info = next(i for i in LAYERS if i.name == source)
    if not at:
        return info
    # a tested concept's CAV (`@cav-<folder>`) is one unit; a dictionary has K
    k = 1 if method_k.startswith("cav-") else int(method_k.lstrip("abcdefghijklmnopqrstuvwxyz"))
    return LayerInfo(name, (k, *info.shape[1:]), "concepts")


def with_concept_layer(source: str, k: int, method: str) -> tuple[LayerInfo, ...]:
    """`LAYERS` with the concept layer of `source` right after it (what the session sends)."""
    return with_direction_layer(f"{source}@{method}{k}")


def with_direction_layer(name: str) -> tuple[LayerInfo, ...]:
    """`LAYERS` with the direction layer `name` right after its source."""
    source = name.partition("@")[0]
    concept = layer_info(name)
    return tuple(x for i in LAYERS for x in ((i, concept) if i.name == source else (i,)))


PREDICTIONS = (
    Prediction(285, "Egyptian cat", 0.612),
    Prediction(281, "tabby, tabby cat", 0.204),
    Prediction(282, "tiger cat", 0.117),
    Prediction(287, "lynx, catamount", 0.031),
    Prediction(283, "Persian cat", 0.012),
)
CLASS_NAMES = tuple({p.index: p.label for p in PREDICTIONS}.get(i, f"class {i}")
                    for i in range(1000))
# what the ablated net says once units are deleted: the cat is less sure, a fox creeps in
ABLATED_PREDICTIONS = (
    Prediction(281, "tabby, tabby cat", 0.331),
    Prediction(285, "Egyptian cat", 0.298),
    Prediction(277, "red fox, Vulpes vulpes", 0.142),
    Prediction(282, "tiger cat", 0.090),
    Prediction(356, "weasel", 0.024),
)
PHOTO_NAMES = (
    "chelsea", "coffee", "astronaut", "rocket", "camera", "retina", "brick",
    "hubble_deep_field", "immunohistochemistry",
)
NO_SCAN_NOTE = (
    "No scan of {layer} yet. Scan a folder of images to find the patches that excite each "
    "unit most (or run `deepvis scan FOLDER --layers {layer}`)."
)


@cache
def photo() -> np.ndarray:
    """A real RGB photo (scikit-image's `chelsea`, 300×451), read-only."""
    from skimage import data

    image = np.ascontiguousarray(data.chelsea(), dtype=np.uint8)
    image.setflags(write=False)
    return image


def skimage_photo(name: str) -> np.ndarray:
    """(h, w, 3) uint8 RGB of one of scikit-image's bundled photos."""
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def write_photos(folder: Path, names: tuple[str, ...] = PHOTO_NAMES) -> list[Path]:
    """Write real photos as PNG files (with QImage: no OpenCV in GUI tests)."""
    from PyQt6.QtGui import QImage

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        rgb = skimage_photo(name)
        h, w = rgb.shape[:2]
        image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        path = folder / f"{name}.png"
        assert image.save(str(path)), path
        paths.append(path)
    return paths


def dataset_patches(paths: list[Path], layer: str, unit: int, k: int = 9) -> tuple[Patch, ...]:
    """A plausible dataset top-k for a unit: square crops of the photos, values descending."""
    rng = np.random.default_rng(zlib.crc32(f"{layer}:{unit}".encode()))
    patches = []
    value = float(rng.uniform(8.0, 14.0))
    for path in paths[:k]:
        rgb = skimage_photo(path.stem)
        h, w = rgb.shape[:2]
        side = max(16, min(h, w) // 3)
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        box = (y0, x0, y0 + side, x0 + side)
        crop = np.ascontiguousarray(rgb[y0 : y0 + side, x0 : x0 + side])
        patches.append(Patch(crop, round(value, 3), str(path), box))
        value *= float(rng.uniform(0.85, 0.97))
    return tuple(patches)


def preferred_image(layer: str, unit: int, step: int, total: int, size: int = 96) -> np.ndarray:
    """A colourful periodic pattern that sharpens as `step` approaches `total`."""
    rng = np.random.default_rng(zlib.crc32(f"{layer}/{unit}".encode()))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    freq = rng.uniform(2.0, 7.0, size=(3, 2))
    phase = rng.uniform(0, 2 * np.pi, size=3)
    waves = np.stack(
        [np.sin(2 * np.pi * (freq[c, 0] * yy + freq[c, 1] * xx) + phase[c]) for c in range(3)],
        axis=2,
    )
    sharp = min(max(step / max(total, 1), 0.05), 1.0)
    noise = rng.normal(size=waves.shape).astype(np.float32)
    image = sharp * waves + (1.0 - sharp) * noise
    return np.clip(127.5 + 120.0 * image, 0, 255).astype(np.uint8)


def _upsample(a: np.ndarray, h: int, w: int) -> np.ndarray:
    ys = (np.arange(h) * a.shape[0] // h).clip(0, a.shape[0] - 1)
    xs = (np.arange(w) * a.shape[1] // w).clip(0, a.shape[1] - 1)
    return a[ys][:, xs]


def explanation_of(layer: str, view: ViewState) -> BuildingBlocks:
    """Building blocks computed the article's way from the fake activations and a fixed
    fake gradient (for the top class +1 on even channels, −0.5 on odd ones; for another
    class +1 on every third): act × grad, exactly."""
    acts = activations(layer)
    c = acts.shape[0]
    asked = view.part(BlocksView)
    target = asked.target if asked.target is not None else PREDICTIONS[0].index
    # another class, another gradient: its bars differ from the top class's
    ups = (np.arange(c) % 2 == 0) if target == PREDICTIONS[0].index else (
        np.arange(c) % 3 == target % 3)
    grad = np.where(ups, 1.0, -0.5).astype(np.float32)[:, None, None]
    contrib = acts * grad
    order = np.argsort(-acts, axis=0, kind="stable")[:4]  # (4, H, W)
    units = order.transpose(1, 2, 0)
    values = np.take_along_axis(acts, order, 0).transpose(1, 2, 0)
    k = 6
    spatial = np.stack([acts[i::k].mean(0) for i in range(k)])
    channels = np.zeros((k, c), np.float32)
    for i in range(k):
        channels[i, i::k] = 1.0
    return BuildingBlocks(layer, target, asked.versus, 2.5, 0.61,
                          contrib.sum((1, 2)), contrib.sum(0), units, values, spatial, channels,
                          np.linspace(1.0, -0.5, k).astype(np.float32), "", 21.0)


def attention_of(h: int, w: int, query: tuple[int, int] | None) -> np.ndarray:
    """A bump around the query token (the centre for the class token), rows summing to 1."""
    qy, qx = query if query is not None else (h // 2, w // 2)
    yy, xx = np.mgrid[0:h, 0:w]
    bump = np.exp(-((yy - qy) ** 2 + (xx - qx) ** 2) / 4.0).astype(np.float32)
    return bump / bump.sum()


COLOURS = ("red", "green", "blue", "yellow", "white")


def layer_concepts(layer: str) -> LayerConcepts:
    """Every 4th unit of the default layer detects a colour, the better the lower the unit."""
    if layer != DEFAULT_LAYER:
        return LayerConcepts(layer, "", (), note=f"No dissection of {layer} yet.")
    c = layer_info(layer).channels
    units = tuple(ConceptUnit(u, COLOURS[u // 4 % len(COLOURS)], "color",
                              round(0.2 - u / 1000, 3), u % 4 == 0 and u < 40) for u in range(c))
    return LayerConcepts(layer, "photos (colour, 5 images, min IoU 0.04)", units, 10, 5,
                         (("color", 10, 5),))


def concept_threshold(layer: str, unit: int) -> float:
    """Half the unit's maximum: its mask is where its map is in its upper half."""
    return float(activations(layer)[unit].max()) / 2


@cache
def attribution_map(
    layer: str, unit: int, mode: AttributionMode, at: tuple[int, int] | None
) -> np.ndarray:
    """(crop h, crop w) uint8 saliency: photo edges weighted by where the unit (or `at`) is."""
    x, y, side, _ = centre_crop(photo().shape)
    gray = photo()[y : y + side, x : x + side].astype(np.float32).mean(axis=2)
    dy, dx = np.gradient(gray)
    edges = np.hypot(dx, dy)
    unit_map = activations(layer)[unit]
    if at is not None:
        focus = np.zeros_like(unit_map)
        ay, ax = at
        focus[max(ay - 1, 0) : ay + 2, max(ax - 1, 0) : ax + 2] = 1.0
        unit_map = focus
    weight = _upsample(unit_map, side, side)
    power = {AttributionMode.GRADIENT: 0.5, AttributionMode.DECONVNET: 1.0}.get(mode, 2.0)
    saliency = edges**power * weight
    # like the engine: scaled to a high percentile so a few hot pixels do not hide the rest
    saliency = np.clip(saliency / max(float(np.percentile(saliency, 99.5)), 1e-6), 0.0, 1.0)
    out = np.round(255.0 * saliency).astype(np.uint8)
    out.setflags(write=False)
    return out


@cache
def live_top(layer: str, unit: int, k: int = 9) -> tuple[Patch, ...]:
    """Crops of "frames" around the unit's strongest cells, best first (one tuple per unit)."""
    x0, y0, side, _ = centre_crop(photo().shape)
    m = activations(layer)[unit]
    order = np.argsort(m.ravel())[::-1][:k]
    scale = side / m.shape[0]
    half = max(int(side / 6), 8)
    patches = []
    for i, flat in enumerate(order):
        r, c = divmod(int(flat), m.shape[1])
        cy, cx = y0 + int((r + 0.5) * scale), x0 + int((c + 0.5) * scale)
        box = (max(cy - half, 0), max(cx - half, 0), cy + half, cx + half)
        crop = np.ascontiguousarray(photo()[box[0] : box[2], box[1] : box[3]])
        patches.append(Patch(crop, float(m.ravel()[flat]), f"frame {100 + 7 * i}", box))
    return tuple(patches)


def ablation_curves(layer: str, points: int = 11) -> AblationCurves:
    """Curves shaped like Morcos et al.'s: selective-first falls slower than random."""
    c = layer_info(layer).channels
    f = np.linspace(0.0, 1.0, points)
    random = 0.74 * (1.0 - f**1.6)
    rng = np.random.default_rng(zlib.crc32(layer.encode()))
    curves = {
        "random": (random, 0.03 + 0.04 * np.sin(np.pi * f)),
        "selective first": (0.74 * (1.0 - f**2.2), np.zeros(points)),
        "selective last": (0.74 * (1.0 - f**1.2), np.zeros(points)),
    }
    selectivity = rng.beta(2.0, 5.0, size=c).astype(np.float32)
    return AblationCurves(layer, f, curves, selectivity, "accuracy", 500)


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
    info = layer_info(layer)
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
    view: ViewState | None = None,
    with_live_top: bool = True,
    source: str = "chelsea.png",
    index: int = 0,
) -> Result:
    """A complete `Result` for `layer` as the engine would send it (analyses from `view`)."""
    acts = activations(layer)
    c, h, w = acts.shape
    unit = min(max(unit, 0), c - 1)
    geometry: GridGeometry = grid_geometry(c, h, w, aspect=aspect)
    per_channel = normalization == Normalization.PER_CHANNEL
    mosaic = tile_channels(normalize_channels(acts, per_channel), geometry)
    frame = Frame(image=photo(), index=index, timestamp=float(seq), source=source)
    view = view or ViewState(layer=layer, unit=unit)
    records: list[object] = []
    asked = view.part(AttributionView)
    if asked.mode != AttributionMode.OFF:
        at = asked.at
        if at is not None and not (0 <= at[0] < h and 0 <= at[1] < w):
            at = None
        records.append(AttributionRecord(attribution_map(layer, unit, asked.mode, at),
                                          asked.mode, 18.0))
    ablated = any(units for _, units in view.part(DeletionView).ablated)
    if ablated:
        records.append(DeletionRecord(PREDICTIONS))
    if view.part(BlocksView).on and h > 1:
        records.append(explanation_of(layer, view))
    attention = view.part(AttentionView)
    if attention.on:
        records.append(AttentionRecord(attention_of(h, w, attention.query),
                                       "block 3 of 12, from the class token"))
    if with_live_top:
        records.append(LiveTopRecord(live_top(layer, unit)))
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
        predictions=ABLATED_PREDICTIONS if ablated else PREDICTIONS,
        latency_ms=38.4,
        compute_ms=21.7,
        fps=29.6,
        dropped_frames=3,
        device="cpu",
        model="efficientnet_lite0",
        frozen=frozen,
        records=tuple(records),
    )


class FakeBackend:
    """Implements `LiveBackend`; queues a ModelReady and a SourceReady at start."""

    def __init__(
        self,
        ready: bool = True,
        live: bool = True,
        photos: list[Path] | None = None,
        render_steps: tuple[int, ...] = (),
    ) -> None:
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
        self._folder: list[str] = []  # file names of an open folder source
        # a "broken…" source failed with none showing before it: no frame comes
        self._source_failed = False
        self._source_showing = ready
        # a PreferredImageRequest is answered with patches from these photos (None: a "no
        # scan" note), and with preferred-image previews at these steps of 64 (64: the final)
        self.photos = photos
        self.render_steps = render_steps
        self.concept_names: dict[str, list[str]] = {}  # what the dictionaries' names.json hold
        if ready:
            self._events.append(self.model_ready())
            self._events.append(SourceReady("chelsea.png", "image", 1, 0))

    @staticmethod
    def model_ready(name: str = "efficientnet_lite0") -> ModelReady:
        return ModelReady(name, LAYERS, DEFAULT_LAYER, "cpu", 1000, CLASS_NAMES)

    def emit(self, event: Event) -> None:
        """Queue an event for the next `poll_events` (tests use it to inject notices)."""
        self._events.append(event)

    # --- LiveBackend

    def poll_result(self) -> Result | None:
        if not self._model_ready or self._source_failed:
            return None
        if (self._view.frozen or not self.live) and not self._dirty:
            return None
        self._dirty = False
        self.results_made += 1
        v = self._view
        source, index = "chelsea.png", 0
        if self._folder:
            index = self._folder_position % len(self._folder)
            source = self._folder[index]
        return make_result(
            v.layer or DEFAULT_LAYER, v.unit, v.normalization, v.frozen, self.results_made,
            view=v, source=source, index=index,
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
        if path.name.startswith("broken"):  # like the session on a corrupt file
            reason = f"cannot open {spec}: not an image, video or folder"
            self._events.append(Notice(reason, NoticeLevel.ERROR))
            self._events.append(SourceFailed(spec, reason, self._source_showing))
            self._source_failed = not self._source_showing  # an old one runs on
            return
        self._source_failed, self._source_showing = False, True
        if not path.is_dir():
            self._folder = []
            self._events.append(SourceReady(path.name, "image", 1, 0))
            return
        # like the real folder source: its label is the picture shown, frames name theirs
        self._folder = sorted(p.name for p in path.iterdir()) or ["1.png", "2.png", "3.png"]
        self._folder_position = 0
        self._dirty = True
        self._events.append(SourceReady(self._folder[0], "folder", len(self._folder), 0))

    def step_source(self, delta: int) -> None:
        self.calls.append(("step_source", delta))
        self._folder_position += delta
        self._dirty = True

    def set_mirror(self, mirror: bool) -> None:
        self.calls.append(("set_mirror", mirror))

    def load_model(self, spec: str) -> None:
        self.calls.append(("load_model", spec))
        if spec == "broken":
            self._events.append(Notice("cannot load model 'broken'", NoticeLevel.ERROR))
            self._events.append(ModelFailed(spec, "cannot load model 'broken'"))
        else:
            self._events.append(self.model_ready(spec))

    def model_choices(self) -> list[ModelChoice]:
        return [
            ModelChoice("efficientnet_lite0", "EfficientNet-Lite0, ImageNet (bundled)", True),
            ModelChoice("resnet18", "torchvision ResNet-18, ImageNet weights", False),
            ModelChoice("googlenet", "torchvision GoogLeNet (Inception v1)", False),
        ]

    def architectures(self) -> list[str]:
        return ["alexnet", "resnet18", "resnet34", "resnet50", "vgg16"]

    def submit(self, request: Request) -> None:
        """Answered from `ANSWERS`: the events the real job would send, at once."""
        self.calls.append(("submit", request))
        answer = ANSWERS.get(type(request))
        if answer is not None:
            answer(self, request)

    def cancel(self, kind: str) -> None:
        self.calls.append(("cancel", kind))
        request = next((r for n, r in reversed(self.calls)
                        if n == "submit" and isinstance(r, Request) and r.kind == kind), None)
        if request is None:  # a job a test made up: an empty request of its type stands in
            request = object.__new__(next(t for t in ANSWERS if t.kind == kind))
        self._events.append(JobEvent(request, text="cancelled", state=JobState.CANCELLED))

    # --- the answers to requests

    def _preview(self, request: Request, *messages: object) -> None:
        self._events.extend(JobEvent(request, 0, 1, "", preview=m) for m in messages)

    def _step(self, request: Request, done: int, total: int, text: str) -> None:
        self._events.append(JobEvent(request, done, total, text))

    def _end(self, request: Request, text: str, result: object | None = None) -> None:
        self._events.append(JobEvent(request, 1, 1, text, result=result, state=JobState.OK))

    def _unit(self, r: PreferredImageRequest) -> None:
        layer, unit = r.layer, r.unit
        if self.photos is None:
            self._preview(r, UnitPatches(layer, unit, (), NO_SCAN_NOTE.format(layer=layer)))
        else:
            self._preview(r, UnitPatches(layer, unit, dataset_patches(self.photos, layer, unit),
                                         dataset=self.photos[0].parent.as_posix()))
        self._preview(r, *(self.preferred(layer, unit, step) for step in self.render_steps))

    def _concepts(self, r: ConceptsRequest) -> None:
        """Learned at once: one step, then the layer list with the concept layer in it."""
        self._step(r, 0, 4, "collect 0/4 images")
        layers = with_concept_layer(r.layer, r.k, r.method)
        added = f"{r.layer}@{r.method}{r.k}"
        self.concept_names[added] = [f"concept {i}" for i in range(r.k)]
        self._end(r, f"{added} learned", LayersChanged(layers, added))

    def _tcav(self, r: TcavRequest) -> None:
        """Tested at once: the score as the notice, the CAV's one-unit layer added."""
        added = f"{r.layers[0]}@cav-{Path(r.folder).name.lower()}"
        self._end(r, f"{r.target} on the concept: {r.layers[0]} 0.94 (random 0.48, p 1e-05, "
                     "significant)", LayersChanged(with_direction_layer(added), added))

    def _audit(self, r: AuditRequest) -> None:
        """The report page as a preview, then the run's end."""
        page = str(Path(r.folder) / "report" / "audit.html")
        self._preview(r, ReportWritten(page, "2 groups, accuracy gap 0.25"))
        self._end(r, "2 groups, accuracy gap 0.25")

    def _concept_names(self, r: ConceptNamesRequest | RenameConceptRequest) -> None:
        names = self.concept_names.setdefault(
            r.layer, [f"concept {i}" for i in range(layer_info(r.layer).channels)])
        if isinstance(r, RenameConceptRequest):
            names[r.unit] = " ".join(r.name.split()) or f"concept {r.unit}"
        self._end(r, "names", ConceptNames(r.layer, tuple(names)))

    @staticmethod
    def preferred(layer: str, unit: int, step: int, total: int = 64) -> PreferredImage:
        act = 4.0 + 14.0 * step / total
        return PreferredImage(
            layer, unit, preferred_image(layer, unit, step, total), round(act, 2), step, total,
            step >= total, 11.6,
        )

    def _unit_card(self, r: UnitCardRequest) -> None:
        """Facts, one attribution per dataset patch (its crop inverted) and three variants."""
        layer, unit = r.layer, r.unit
        named = {u.unit: u for u in layer_concepts(layer).units}
        concept = named.get(unit)
        concept = concept if concept is not None and concept.interpretable else None
        self._preview(r, UnitFacts(
            layer, unit, f"0.{unit % 10}4 (rank {unit + 1}), prefers tabby cat", "",
            None if concept is None else f"{concept.label} ({concept.category}), IoU "
            f"{concept.iou:.3f}", f"No dissection of {layer} cached",
            None if concept is None else concept_threshold(layer, unit)))
        if self.photos is not None:
            crops = dataset_patches(self.photos, layer, unit)
            self._preview(r, PatchAttributions(
                layer, unit, tuple(255 - p.image for p in crops), "guided"))
        for index in range(4):  # the diversity set: one seed, images rolled apart
            image = np.roll(preferred_image(layer, unit, 64, 64), 9 * index, axis=1)
            self._preview(r, PreferredVariant(layer, unit, index, 0, image, 10.0 + index, True))

    def _frame_image(self, r: AccentuateRequest | InvertRequest | ActivationGridRequest) -> None:
        """A preview then the final picture per layer: the photo's crop, inverted in colour
        for an accentuation, rolled for an inversion."""
        x, y, side, _ = centre_crop(photo().shape)
        seed = np.ascontiguousarray(photo()[y : y + side, x : x + side])
        layers = r.layers if isinstance(r, InvertRequest) else (r.layer,)
        unit = r.unit if isinstance(r, AccentuateRequest) else -1
        for layer in layers:
            image_ = 255 - seed if r.kind == "accentuate" else np.roll(seed, 17, axis=1)
            self._preview(r, FrameImage(r.kind, layer, unit, image_, "step 8/48", False),
                          FrameImage(r.kind, layer, unit, image_, "final", True, seed))

    def _integrated(self, r: IntegratedRequest) -> None:
        """The integrated values: the live ones reversed in sign, so a test tells them apart."""
        e = explanation_of(r.layer, ViewState(layer=r.layer, parts=(BlocksView(True, r.target,
                                                                              r.versus),)))
        span = float(-e.channels.sum())
        self._end(r, "integrated", IntegratedExplanation(
            r.layer, r.target, r.versus, 100, -e.channels, -e.spatial, span + 1.0, 1.0))

    def _group_icons(self, r: GroupIconsRequest) -> None:
        n = len(r.directions)
        self._end(r, "icons", GroupIcons(r.layer, tuple(f"g{i}" for i in range(n)),
                                         tuple(np.full((8, 8, 3), 40 * i, np.uint8)
                                               for i in range(n))))

    def _icons(self, r: UnitIconsRequest) -> None:
        """Even units have an icon (a flat colour from the unit), odd ones not yet."""
        self._preview(r, UnitIcons(r.layer, tuple(
            (u, np.full((8, 8, 3), (u * 7 % 256, 90, 40), np.uint8)) for u in r.units
            if u % 2 == 0)))

    def _render_layer(self, r: RenderLayerRequest) -> None:
        c = layer_info(r.layer).channels
        self._step(r, 0, c, f"0 / {c} units")

    @staticmethod
    def preferred_grid(layer: str, aspect: float = 1.0, tile: int = 16) -> PreferredGrid:
        """Even units have an image (a flat colour from the unit), odd ones not yet."""
        c = layer_info(layer).channels
        g = grid_geometry(c, tile, tile, pad=2, aspect=aspect)
        image = np.zeros((g.height, g.width, 3), np.uint8)
        for u in range(c):
            y, x = g.tile_origin(u)
            image[y : y + tile, x : x + tile] = (u * 7 % 256, 200, 40) if u % 2 == 0 else 40
        return PreferredGrid(layer, image, g, tuple(range(0, c, 2)))

    def stop(self) -> None:
        self.calls.append(("stop", None))
        self.stop_calls += 1

    # --- helpers for assertions

    def called(self, name: str) -> list[object]:
        return [arg for n, arg in self.calls if n == name]

    def asked(self, request_type: type[R]) -> list[R]:
        """The requests of this type submitted so far, oldest first."""
        return [r for n, r in self.calls if n == "submit" and type(r) is request_type]


R = TypeVar("R", bound=Request)
# how the fake answers each request type (none: it only records the request)
ANSWERS: dict[type[Request], Callable[[FakeBackend, Any], None]] = {
    PreferredImageRequest: FakeBackend._unit,
    UnitCardRequest: FakeBackend._unit_card,
    AccentuateRequest: FakeBackend._frame_image,
    InvertRequest: FakeBackend._frame_image,
    ActivationGridRequest: FakeBackend._frame_image,
    IntegratedRequest: FakeBackend._integrated,
    ClassUnitsRequest: lambda b, r: b._step(r, 0, 240, "0 / 240 units"),
    GroupIconsRequest: FakeBackend._group_icons,
    UnitIconsRequest: FakeBackend._icons,
    LayerConceptsRequest: lambda b, r: b._end(r, "labels", layer_concepts(r.layer)),
    DissectRequest: lambda b, r: b._step(r, 0, 40, "thresholds 0/40"),
    ScanRequest: lambda b, r: b._step(r, 0, 500, "0 / 500 images"),
    RenderLayerRequest: FakeBackend._render_layer,
    PreferredGridRequest: lambda b, r: b._end(r, "grid", b.preferred_grid(r.layer, r.aspect)),
    AblationRequest: lambda b, r: b._step(r, 0, 500, "0 / 500 images"),
    ConceptsRequest: FakeBackend._concepts,
    ConceptNamesRequest: FakeBackend._concept_names,
    RenameConceptRequest: FakeBackend._concept_names,
    TcavRequest: FakeBackend._tcav,
    AuditRequest: FakeBackend._audit,
}
