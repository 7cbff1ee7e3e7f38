"""What the window asks the session to work on in the background, and what comes back.

Each request type is one kind of work. It declares, once, what three tables in the GUI
used to classify separately: its `kind` (the cancel key: at most one job of a kind runs,
and a newer request of the kind supersedes the running one), its `label` (the job's name
in the status bar and in notices), whether it is `quiet` (no bar, no finish notice: the
answer itself is the news) and whether the user can `cancel` it from the menu. A new job
is a new request type here, a session job registered for it, and a handler in the window;
no shared enum or table grows.

Requests are values: two equal requests are the same work, and the session's job runner
drops one that equals the job already running. Requests that carry a frame or a matrix
(numpy arrays) compare by identity (`eq=False`): the same array object is the same work.

One event comes back for every job, `JobEvent`: the request, how far it is, a preview or
partial result while it runs (a `PreferredImage` step, a unit's `UnitPatches`), and at the
end its result or error and whether it finished, failed or was cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import numpy as np


class Request:
    """The class-level facts every request type declares (see the module docstring)."""

    kind: ClassVar[str]
    label: ClassVar[str]
    quiet: ClassVar[bool] = False
    cancellable: ClassVar[bool] = True
    # its steps as a bar in the status bar (False: its own pane shows them)
    progress_bar: ClassVar[bool] = True


def request_types() -> tuple[type[Request], ...]:
    """Every concrete request type defined so far (those that declare a `kind`)."""
    found: list[type[Request]] = []
    todo: list[type[Request]] = [Request]
    while todo:
        for sub in todo.pop(0).__subclasses__():
            todo.append(sub)
            if "kind" in vars(sub) and all(t.kind != sub.kind for t in found):
                found.append(sub)
    return tuple(found)


@dataclass(frozen=True)
class FolderRequest(Request):
    """Work on a folder of images the user picked: the session checks the folder exists
    (and that a model is loaded) before it starts, and says so when not."""

    folder: str


# -- one unit --------------------------------------------------------------------------

@dataclass(frozen=True)
class PreferredImageRequest(Request):
    """The selected unit's dataset patches (from a cached scan), then its preferred image:
    cached, or rendered with previews."""

    kind: ClassVar[str] = "render"
    label: ClassVar[str] = "render"
    progress_bar: ClassVar[bool] = False
    layer: str
    unit: int


@dataclass(frozen=True)
class UnitCardRequest(Request):
    """The unit card's extras: what the caches know, patch attributions, a diversity set."""

    kind: ClassVar[str] = "unit_card"
    label: ClassVar[str] = "unit card"
    progress_bar: ClassVar[bool] = False
    layer: str
    unit: int


@dataclass(frozen=True)
class UnitIconsRequest(Request):
    """Small preferred images of some units (cached, or rendered small)."""

    kind: ClassVar[str] = "icons"
    label: ClassVar[str] = "unit icons"
    quiet: ClassVar[bool] = True
    cancellable: ClassVar[bool] = False
    layer: str
    units: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class GroupIconsRequest(Request):
    """The preferred image of each (k, C) direction of a layer (neuron groups), cached."""

    kind: ClassVar[str] = "group_icons"
    label: ClassVar[str] = "group icons"
    quiet: ClassVar[bool] = True
    cancellable: ClassVar[bool] = False
    layer: str
    directions: np.ndarray  # (k, C) float32


# -- one layer -------------------------------------------------------------------------

@dataclass(frozen=True)
class RenderLayerRequest(Request):
    """Render (and cache) the preferred image of every unit of a layer."""

    kind: ClassVar[str] = "render_layer"
    label: ClassVar[str] = "render layer"
    layer: str


@dataclass(frozen=True)
class PreferredGridRequest(Request):
    """A layer's cached preferred images as one mosaic laid out for a pane of width/height
    `aspect` (nothing is rendered for it)."""

    kind: ClassVar[str] = "preferred_grid"
    label: ClassVar[str] = "preferred images grid"
    quiet: ClassVar[bool] = True
    cancellable: ClassVar[bool] = False
    layer: str
    aspect: float


@dataclass(frozen=True)
class LayerConceptsRequest(Request):
    """The concept labels of the newest cached dissection of a layer (files: not read on
    the GUI thread)."""

    kind: ClassVar[str] = "concepts"
    label: ClassVar[str] = "concept labels"
    quiet: ClassVar[bool] = True
    cancellable: ClassVar[bool] = False
    layer: str


@dataclass(frozen=True)
class ConceptNamesRequest(Request):
    """The names of a concept layer's concepts, as stored with its dictionary."""

    kind: ClassVar[str] = "concept_names"
    label: ClassVar[str] = "concept names"
    quiet: ClassVar[bool] = True
    cancellable: ClassVar[bool] = False
    layer: str


@dataclass(frozen=True)
class RenameConceptRequest(Request):
    """Give concept `unit` of a concept layer a name, stored with the dictionary (an empty
    name restores the default)."""

    kind: ClassVar[str] = "concept_rename"
    label: ClassVar[str] = "rename concept"
    cancellable: ClassVar[bool] = False
    progress_bar: ClassVar[bool] = False
    layer: str
    unit: int
    name: str


# -- a folder of images ----------------------------------------------------------------

@dataclass(frozen=True)
class ScanRequest(FolderRequest):
    """The top patches of every unit of a layer in a folder, into the cache."""

    kind: ClassVar[str] = "scan"
    label: ClassVar[str] = "scan"
    layer: str


@dataclass(frozen=True)
class ConceptsRequest(FolderRequest):
    """Learn K concepts (directions) of a layer on a folder; the concept layer they make
    joins the live view's layers when the job ends."""

    kind: ClassVar[str] = "concepts_learn"
    label: ClassVar[str] = "concepts"
    layer: str
    k: int = 32
    method: str = "nmf"


@dataclass(frozen=True)
class TcavRequest(FolderRequest):
    """Does class `target` (a name or an index) depend on the concept the images of
    `folder` show? TCAV at `layers` against `random` images, scored on `examples` (images
    of the class); each layer's CAV joins the live view as a one-unit direction layer."""

    kind: ClassVar[str] = "tcav"
    label: ClassVar[str] = "concept test (TCAV)"
    random: str
    examples: str
    target: str
    layers: tuple[str, ...]
    runs: int = 10


@dataclass(frozen=True)
class AuditRequest(FolderRequest):
    """A bias audit of a folder sorted into groups of class folders
    (`folder/<group>/<class>/*.jpg`; every group folder when `groups` is empty): its report
    page, and each group's direction as a unit of the live view."""

    kind: ClassVar[str] = "audit"
    label: ClassVar[str] = "bias audit"
    groups: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()


@dataclass(frozen=True)
class DissectRequest(FolderRequest):
    """Concept labels of a layer's units on a folder (its masks, or colour concepts)."""

    kind: ClassVar[str] = "dissect"
    label: ClassVar[str] = "dissection"
    layer: str


@dataclass(frozen=True)
class AblationRequest(FolderRequest):
    """Ablation curves and class selectivity of a layer on a (labelled) folder."""

    kind: ClassVar[str] = "ablate"
    label: ClassVar[str] = "ablation"
    layer: str


@dataclass(frozen=True)
class ClassUnitsRequest(FolderRequest):
    """A layer's units ranked by what deleting each costs one class, on a labelled folder."""

    kind: ClassVar[str] = "class_units"
    label: ClassVar[str] = "class units"
    layer: str
    class_index: int


@dataclass(frozen=True)
class AtlasRequest(FolderRequest):
    """A layer's activation atlas on a folder (cached when built before): its cells, icons
    and the direction layer they make (`LAYER@atlasN`)."""

    kind: ClassVar[str] = "atlas"
    label: ClassVar[str] = "atlas"
    layer: str
    grid: int = 20


@dataclass(frozen=True)
class SessionAtlasRequest(Request):
    """The atlas of a layer made from the frames this session has seen (one a second,
    kept by the session): what the network saw while the user walked around."""

    kind: ClassVar[str] = "session_atlas"
    label: ClassVar[str] = "atlas of this session"
    layer: str
    grid: int = 20


@dataclass(frozen=True)
class CachedAtlasRequest(Request):
    """The newest atlas of a layer the cache holds (`deepvis atlas` or an earlier run), if
    any; nothing is built (files: not read on the GUI thread)."""

    kind: ClassVar[str] = "atlas_cached"
    label: ClassVar[str] = "cached atlas"
    quiet: ClassVar[bool] = True
    cancellable: ClassVar[bool] = False
    layer: str


# -- the frozen frame ------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class AccentuateRequest(Request):
    """What in this (H, W, 3) uint8 frame `unit` of `layer` responds to, as a picture."""

    kind: ClassVar[str] = "accentuate"
    label: ClassVar[str] = "accentuation"
    image: np.ndarray
    layer: str
    unit: int


@dataclass(frozen=True, eq=False)
class InvertRequest(Request):
    """The frame reconstructed from each layer's code."""

    kind: ClassVar[str] = "invert"
    label: ClassVar[str] = "inversion"
    image: np.ndarray
    layers: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class ActivationGridRequest(Request):
    """Each position's activation vector of `layer` for the frame, as a picture."""

    kind: ClassVar[str] = "activation_grid"
    label: ClassVar[str] = "activation grid"
    image: np.ndarray
    layer: str


@dataclass(frozen=True, eq=False)
class IntegratedRequest(Request):
    """Path-integrated attribution of the frame at `layer` for `target` (vs `versus`)."""

    kind: ClassVar[str] = "integrated"
    label: ClassVar[str] = "path-integrated attribution"
    image: np.ndarray
    layer: str
    target: int
    versus: int | None


# -- what comes back -------------------------------------------------------------------

class JobState(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, eq=False)
class JobEvent:
    """One step or the end of the job that answers `request`.

    Running: `done` of `total` and a line of `text`, and maybe a `preview` (a message such
    as `PreferredImage`). Ended: `state` says how, `text` is the outcome (or the error, one
    line), `result` the job's final message when it has one.
    """

    request: Request
    done: int = 0
    total: int = 1
    text: str = ""
    preview: object | None = None
    result: object | None = None
    state: JobState = JobState.RUNNING

    @property
    def kind(self) -> str:
        return self.request.kind

    @property
    def finished(self) -> bool:
        return self.state != JobState.RUNNING

    @property
    def ok(self) -> bool:
        return self.state == JobState.OK
