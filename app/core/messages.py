"""Immutable messages that cross threads: capture → worker → GUI, and GUI → worker.

The live view's own messages are in `app/core/view.py` (what is shown) and
`app/core/results.py` (what a frame gave). Everything here is plain numpy and stdlib so
the GUI never needs torch to read a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from app.core.tiling import GridGeometry

LOGITS = "logits"  # the network's output as a layer: one 1×1 unit per class

@dataclass(frozen=True, eq=False)
class Frame:
    """One RGB frame from a source."""

    image: np.ndarray  # (H, W, 3) uint8, RGB
    index: int  # sequence number within the source (folder: the file's position)
    timestamp: float  # time.perf_counter() when it was captured
    source: str  # what produced it, for display: "camera 0", "cat.jpg"


class Normalization(StrEnum):
    PER_CHANNEL = "per_channel"
    PER_LAYER = "per_layer"


class AttributionMode(StrEnum):
    """Which backward rule maps the selected unit to input pixels (`b` cycles them)."""

    OFF = "off"
    GRADIENT = "gradient"
    DECONVNET = "deconvnet"
    GUIDED = "guided"


class AblationMode(StrEnum):
    ZERO = "zero"  # the unit's output becomes 0
    MEAN = "mean"  # the unit's output becomes its running mean (a gentler deletion)


@dataclass(frozen=True)
class LayerInfo:
    """A recordable layer: dotted name, output shape without batch, module type, and how
    the module laid its output out before it became this (C, H, W) map: "map" (a conv
    map), "tokens" (a transformer's h×w patch tokens), "cls" (its class/register tokens,
    (C, 1, P)) or "nhwc" (channels-last, permuted)."""

    name: str
    shape: tuple[int, ...]
    kind: str
    layout: str = "map"

    @property
    def channels(self) -> int:
        return self.shape[0]

    def describe(self) -> str:
        laid = "" if self.layout == "map" else f", {self.layout}"
        return f"{self.name}  {'×'.join(str(s) for s in self.shape)}  ({self.kind}{laid})"


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    probability: float


@dataclass(frozen=True, eq=False)
class Patch:
    """An image region that excites a unit: a crop around its strongest response."""

    image: np.ndarray  # (h, w, 3) uint8 RGB crop
    value: float  # the unit's activation there
    source: str  # image path (dataset) or "frame N" (live)
    box: tuple[int, int, int, int]  # (y0, x0, y1, x1) of the crop in the source's pixels


@dataclass(frozen=True, eq=False)
class UnitPatches:
    """Dataset top-k of a unit, from a cached scan; empty with a note when there is none."""

    layer: str
    unit: int
    patches: tuple[Patch, ...]
    note: str = ""  # e.g. how to make a scan of this layer
    dataset: str = ""  # the scanned folder the patches come from (absolute path)


@dataclass(frozen=True, eq=False)
class PreferredImage:
    """A unit's preferred image: a preview while it renders, then the final one."""

    layer: str
    unit: int
    image: np.ndarray  # (H, W, 3) uint8
    activation: float  # the unit's response to this image
    step: int
    total: int
    done: bool
    best_dataset_activation: float | None = None  # from a scan, when one exists


@dataclass(frozen=True, eq=False)
class PreferredVariant:
    """Image `index` of a unit's diversity set (the unit card's montage): the set is
    optimized together from seed `seed`, pushed apart by a diversity term. Previews, then
    the final one."""

    layer: str
    unit: int
    index: int
    seed: int
    image: np.ndarray  # (H, W, 3) uint8
    activation: float
    done: bool


@dataclass(frozen=True, eq=False)
class PatchAttributions:
    """The attribution of each of a unit's top patches, in its `UnitPatches` order."""

    layer: str
    unit: int
    images: tuple[np.ndarray, ...]  # (S, S, 3) uint8, mid grey = no signal
    rule: str  # e.g. "guided"


@dataclass(frozen=True)
class UnitFacts:
    """What the caches know of a unit: class selectivity (from ablation curves) and its
    concept label (from dissection); each None with a hint while nothing is cached."""

    layer: str
    unit: int
    selectivity: str | None  # e.g. "0.62 (rank 3 of 112), prefers tabby cat"
    selectivity_hint: str
    concept: str | None  # e.g. "red (color), IoU 0.12"
    concept_hint: str
    # the unit's dissection threshold: where its live map exceeds it is the concept's mask
    concept_threshold: float | None = None


@dataclass(frozen=True)
class ColourDependence:
    """Colour or shape? A unit's mean top activation over the scanned folder with the images
    in grayscale divided by in colour (1: colour changes nothing; near 0: colour alone)."""

    layer: str
    unit: int
    ratio: float
    images: int  # top entries it was measured on


@dataclass(frozen=True, eq=False)
class GroupIcons:
    """The preferred image of each neuron group's direction, in the groups' order; `keys`
    name the directions (the pane keeps them while the groups stay the same)."""

    layer: str
    keys: tuple[str, ...]
    icons: tuple[np.ndarray, ...]  # (h, w, 3) uint8


@dataclass(frozen=True, eq=False)
class UnitIcons:
    """Preferred images of some units of a layer, as icons (cached, or rendered small)."""

    layer: str
    icons: tuple[tuple[int, np.ndarray], ...]  # (unit, (h, w, 3) uint8)


@dataclass(frozen=True, eq=False)
class FrameImage:
    """A picture made from the frozen frame: its feature accentuation for a unit, or its
    inversion from a layer's code; previews while the job runs, then the final one."""

    kind: str  # "accentuate" | "invert" | "activation_grid"
    layer: str
    unit: int  # the unit accentuated; -1 for an inversion
    image: np.ndarray  # (H, W, 3) uint8
    caption: str  # e.g. "activation 1.5 → 22.6, 25.8 dB" or "code error 0.27"
    done: bool
    seed: np.ndarray | None = None  # the frame as the model saw it (the start)


@dataclass(frozen=True, eq=False)
class IntegratedExplanation:
    """Path-integrated attribution of one frame (the layer's activations scaled from zero
    in `steps` steps): per channel and per position, and how well they add up."""

    layer: str
    target: int
    versus: int | None
    steps: int
    channels: np.ndarray  # (C,) float32
    spatial: np.ndarray  # (H, W) float32
    score: float  # score(frame)
    baseline: float  # score with the layer's activations all zero

    @property
    def gap(self) -> float:
        """|Σ attribution − (score − baseline)| relative to |score − baseline|: completeness."""
        span = self.score - self.baseline
        return abs(float(self.channels.sum()) - span) / max(abs(span), 1e-9)


@dataclass(frozen=True)
class ClassUnitCurves:
    """Which units of `layer` class `class_index` needs (Bau et al. 2020): units ranked by
    the class accuracy lost when each alone is deleted, and the accuracy of the class and
    of the other classes with the top n deleted, and with only the top n kept."""

    layer: str
    class_index: int
    class_name: str
    ranking: tuple[int, ...]  # most needed first
    counts: tuple[int, ...]  # the curves' n
    delete_class: tuple[float, ...]
    delete_other: tuple[float, ...]
    keep_class: tuple[float, ...]
    keep_other: tuple[float, ...]
    images: int  # of the class (the others' count is in `note`)
    note: str = ""


@dataclass(frozen=True)
class ConceptUnit:
    """One unit's best concept in a dissection; `interpretable`: its IoU beats the minimum."""

    unit: int
    label: str
    category: str
    iou: float
    interpretable: bool
    strip: str = ""  # its top images, the concept's mask drawn (an image file); "" if none


@dataclass(frozen=True)
class LayerConcepts:
    """A layer's dissection as the window shows it: every unit's concept and the summary
    (interpretable units and unique concepts, overall and per category); with no
    dissection cached, no units and a note saying how to make one."""

    layer: str
    dataset: str
    units: tuple[ConceptUnit, ...]
    interpretable: int = 0
    unique: int = 0
    by_category: tuple[tuple[str, int, int], ...] = ()  # (category, interpretable, unique)
    note: str = ""

    def labels(self) -> dict[int, str]:
        """Unit → its concept's label, for the interpretable units."""
        return {u.unit: u.label for u in self.units if u.interpretable}


@dataclass(frozen=True, eq=False)
class PreferredGrid:
    """A layer's preferred images in one mosaic, each unit's at its tile in `geometry`."""

    layer: str
    image: np.ndarray  # (H, W, 3) uint8; units not rendered yet are a dark tile
    geometry: GridGeometry
    rendered: tuple[int, ...]  # the units that have an image


@dataclass(frozen=True, eq=False)
class AblationCurves:
    """Accuracy vs. fraction of a layer's units deleted, and each unit's class selectivity."""

    layer: str
    fractions: np.ndarray  # (P,) 0..1
    # order name ("random", "selective first", "selective last") → (mean (P,), spread (P,))
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    selectivity: np.ndarray  # (C,) class-selectivity index per unit
    metric: str  # "accuracy" (labeled folders) or "agreement with the intact top-1"
    images: int
    # units with a negative class mean (signed layers): their means were shifted to be
    # >= 0 before the index, which Morcos et al.'s definition does not do
    shifted_units: int = 0


class NoticeLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Notice:
    """A one-line message for the status bar / log."""

    text: str
    level: NoticeLevel = NoticeLevel.INFO


@dataclass(frozen=True)
class ModelReady:
    """A model finished loading; the GUI rebuilds its layer list from it."""

    name: str
    layers: tuple[LayerInfo, ...]
    default_layer: str
    device: str
    num_classes: int
    class_names: tuple[str, ...] = ()  # the `logits` layer's units, when the model has names


@dataclass(frozen=True)
class LayersChanged:
    """The live model's layers changed (a concept layer was learned): the whole new list,
    and the layer that is new."""

    layers: tuple[LayerInfo, ...]
    added: str


@dataclass(frozen=True)
class ConceptNames:
    """The names of a concept layer's units, one per concept, in concept order."""

    layer: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class ReportWritten:
    """A report page was written (the bias audit's): where, and one line of what it says."""

    path: str
    summary: str


@dataclass(frozen=True)
class ModelFailed:
    """A model could not be loaded (its error `Notice` came just before); the old one runs on."""

    spec: str
    reason: str


@dataclass(frozen=True)
class SourceFailed:
    """A source could not be opened, or stopped for good (every read failed): no frame
    from it will come. `still_showing`: the source that was showing before a failed open
    runs on."""

    spec: str
    reason: str
    still_showing: bool = False


@dataclass(frozen=True)
class SourceReady:
    """A source opened; `count` is the number of items for a folder, else 1 (or 0: live)."""

    label: str
    kind: str  # "camera", "video", "image", "folder"
    count: int = 0
    position: int = 0


@dataclass(frozen=True)
class ModelChoice:
    """A model the user can pick, and whether it works without a network."""

    name: str
    description: str
    offline: bool
    extras: tuple[str, ...] = field(default_factory=tuple)
