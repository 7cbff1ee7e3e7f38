"""The interface the GUI drives. The composition root hands the GUI an implementation.

Every method returns at once: work happens on the capture, inference and loader threads,
and its outcome comes back through `poll_result` and `poll_events`.
"""

from __future__ import annotations

from typing import Protocol

from app.core.messages import (
    AblationCurves,
    ClassUnitCurves,
    FrameImage,
    GroupIcons,
    IntegratedExplanation,
    JobFinished,
    JobKind,
    JobProgress,
    LayerConcepts,
    ModelChoice,
    ModelFailed,
    ModelReady,
    Notice,
    PatchAttributions,
    PreferredGrid,
    PreferredImage,
    PreferredVariant,
    SourceReady,
    UnitFacts,
    UnitIcons,
    UnitPatches,
)
from app.core.results import Result
from app.core.view import ViewState

Event = (
    Notice | ModelReady | ModelFailed | SourceReady | JobProgress | JobFinished | UnitPatches
    | PreferredImage | PreferredGrid | AblationCurves | PreferredVariant | PatchAttributions
    | UnitFacts | LayerConcepts | UnitIcons | ClassUnitCurves | IntegratedExplanation
    | FrameImage | GroupIcons
)


class LiveBackend(Protocol):
    def poll_result(self) -> Result | None:
        """The newest result not yet returned, or None."""
        ...

    def poll_events(self) -> list[Event]:
        """Events since the last call, oldest first."""
        ...

    def set_view(self, view: ViewState) -> None:
        """Layer, unit, normalization or freeze changed; a frozen frame is re-rendered."""
        ...

    def open_source(self, spec: str) -> None:
        """Switch to `camera:N`, a video, an image or a folder of images."""
        ...

    def step_source(self, delta: int) -> None:
        """Next (+1) or previous (-1) image of a folder source; ignored otherwise."""
        ...

    def set_mirror(self, mirror: bool) -> None: ...

    def load_model(self, spec: str) -> None:
        """Load a model in the background; `ModelReady`, or an error `Notice` and
        `ModelFailed`, follows."""
        ...

    def model_choices(self) -> list[ModelChoice]: ...

    def architectures(self) -> list[str]:
        """Architecture names a state_dict can be loaded into, as `ARCH:PATH`."""
        ...

    def request_unit(self, layer: str, unit: int) -> None:
        """The user selected a unit: answer with `UnitPatches` and `PreferredImage` events.

        The preferred image comes from the cache at once, or a render starts in the
        background (replacing one still running for another unit) and sends previews.
        """
        ...

    def request_unit_card(self, layer: str, unit: int) -> None:
        """The unit card is shown for this unit: answer with `UnitFacts`, `PatchAttributions`
        and `PreferredVariant` events (replacing the card job of another unit)."""
        ...

    def start_frame_image(self, kind: str, image: object, layers: tuple[str, ...],
                          unit: int) -> None:
        """Accentuate `unit` of `layers[0]` in the (H, W, 3) uint8 frame (kind "accentuate"),
        or reconstruct the frame from each layer's code ("invert"): `FrameImage` events."""
        ...

    def start_integrated(self, image: object, layer: str, target: int,
                         versus: int | None) -> None:
        """Path-integrated attribution of one (H, W, 3) uint8 frame (`IntegratedExplanation`)."""
        ...

    def start_class_units(self, folder: str, layer: str, class_index: int) -> None:
        """Rank `layer`'s units by what deleting each costs one class, on a labelled folder."""
        ...

    def request_group_icons(self, layer: str, directions: object) -> None:
        """Answer with `GroupIcons`: the preferred image of each (k, C) direction, cached."""
        ...

    def request_icons(self, layer: str, units: tuple[int, ...]) -> None:
        """Answer with `UnitIcons` of these units: cached renders at once, the missing
        ones rendered small in the background (a newer request replaces this one)."""
        ...

    def request_layer_concepts(self, layer: str) -> None:
        """Answer with the `LayerConcepts` of the newest cached dissection of `layer`."""
        ...

    def start_dissection(self, folder: str, layer: str) -> None:
        """Dissect `layer` on a folder (its masks, or the built-in colour concepts)."""
        ...

    def start_scan(self, folder: str, layer: str) -> None:
        """Scan a folder of images for the top patches of every unit of `layer`."""
        ...

    def start_render_layer(self, layer: str) -> None:
        """Render (and cache) the preferred image of every unit of `layer`."""
        ...

    def request_preferred_grid(self, layer: str, aspect: float) -> None:
        """Answer with a `PreferredGrid` of `layer`'s cached preferred images, tiles laid out
        to fill a pane of width/height `aspect` (nothing is rendered for it)."""
        ...

    def start_ablation(self, folder: str, layer: str) -> None:
        """Ablation curves and class selectivity of `layer` on a (labeled) folder."""
        ...

    def cancel_job(self, kind: JobKind) -> None: ...

    def stop(self) -> None:
        """Stop every thread and release the camera; returns when they have ended."""
        ...
