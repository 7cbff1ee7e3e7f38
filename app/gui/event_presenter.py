"""Shows the backend's events: a model or source that opened, a unit's patches and images,
job progress, ablation curves, notices.

An answer for a unit that is no longer selected is dropped here (the backend may still be
finishing the previous one). The layer and unit given on the command line apply to the
first model only.
"""

from __future__ import annotations

from collections.abc import Callable

from app.core.backend import Event, LiveBackend
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
    ModelFailed,
    ModelReady,
    Notice,
    NoticeLevel,
    PatchAttributions,
    PreferredGrid,
    PreferredImage,
    PreferredVariant,
    SourceReady,
    UnitFacts,
    UnitIcons,
    UnitPatches,
)
from app.gui.actions import ActionSet
from app.gui.jobs_view import JOB_NAMES
from app.gui.preferred_grid import PreferredGridMode
from app.gui.result_presenter import ResultPresenter
from app.gui.status_bar import StatusBar
from app.gui.view_model import ViewModel
from app.gui.window_layout import WindowLayout


class EventPresenter:
    """Turns each backend event into pane updates; `handle` is its one entry."""

    def __init__(
        self,
        backend: LiveBackend,
        model: ViewModel,
        panes: WindowLayout,
        status: StatusBar,
        actions: ActionSet,
        preferred: PreferredGridMode,
        results: ResultPresenter,
        notify: Callable[[Notice], None],
        set_title: Callable[[str], None],
        initial_layer: str | None,
        initial_unit: int | None,
    ) -> None:
        self._backend = backend
        self._model = model
        self._panes = panes
        self._status = status
        self._actions = actions
        self._preferred = preferred
        self._results = results
        self._notify = notify
        self._set_title = set_title
        self._initial_layer = initial_layer
        self._initial_unit = initial_unit
        self.model_name = ""
        self._concepts: LayerConcepts | None = None  # the selected layer's dissection
        self._tile_labels = False
        self._model_label: str | None = None  # the status bar's model text before a load

    def handle(self, event: Event) -> None:
        """React to one backend event."""
        if isinstance(event, Notice):
            self._notify(event)
        elif isinstance(event, ModelReady):
            self._on_model_ready(event)
        elif isinstance(event, ModelFailed):
            self._on_model_failed(event)
        elif isinstance(event, SourceReady):
            self._results.set_source(event)
        elif isinstance(event, UnitPatches):
            self._on_unit_patches(event)
        elif isinstance(event, PreferredImage):
            self._on_preferred_image(event)
        elif isinstance(event, PreferredVariant):
            self._panes.card.on_preferred(event)
        elif isinstance(event, PatchAttributions):
            self._panes.card.on_patch_attributions(event)
        elif isinstance(event, UnitFacts):
            self._panes.card.on_facts(event)
            self._results.set_concept_threshold(event.layer, event.unit,
                                                event.concept_threshold)
        elif isinstance(event, LayerConcepts):
            self._on_layer_concepts(event)
        elif isinstance(event, GroupIcons):
            self._panes.blocks.set_group_icons(event.layer, event.icons)
        elif isinstance(event, UnitIcons):
            self._panes.blocks.set_icons(event.layer, event.icons)
        elif isinstance(event, PreferredGrid):
            self._preferred.on_grid(event, self._results.shown_layer())
        elif isinstance(event, JobProgress):
            self._on_job_progress(event)
        elif isinstance(event, JobFinished):
            self._on_job_finished(event)
        elif isinstance(event, AblationCurves):
            self._panes.ablation.set_curves(event)
        elif isinstance(event, ClassUnitCurves):
            self._panes.ablation.set_class_units(event)
        elif isinstance(event, FrameImage):
            self._panes.frame_pane.on_frame_image(event)
        elif isinstance(event, IntegratedExplanation):
            self._panes.blocks.set_integrated(event)
            self._results.update_blocks()

    def concepts_layer(self) -> str | None:
        """The layer whose dissection the window holds (None: none asked for yet)."""
        return self._concepts.layer if self._concepts is not None else None

    def show_tile_labels(self, on: bool) -> None:
        """L: each unit's concept label on its grid tile, or none."""
        self._tile_labels = on
        self._update_tile_labels()

    def _on_layer_concepts(self, event: LayerConcepts) -> None:
        if event.layer != self._model.layer:
            return  # asked for a layer the user has left since
        self._concepts = event
        self._panes.dissection.set_concepts(event)
        self._update_tile_labels()

    def _update_tile_labels(self) -> None:
        c = self._concepts
        shown = self._results.shown_layer()
        on = self._tile_labels and c is not None and c.layer == shown
        self._panes.grid.set_tile_labels(c.labels() if on and c is not None else {})

    def load_model(self, spec: str, label: str) -> None:
        """A model was asked for: say so until it is ready."""
        self._notify(Notice(f"loading model {spec}…"))
        if self._model_label is None:  # a second load before the first ended: keep the first
            self._model_label = self._status.model_text()
        self._status.set_model_text(f"loading {label}")
        self._backend.load_model(spec)

    def _on_model_failed(self, _event: ModelFailed) -> None:
        """The error notice came just before; the status bar names the model still running."""
        before, self._model_label = self._model_label, None
        if self.model_name and before and not before.startswith("loading"):
            self._status.set_model_text(before)
        elif self.model_name:
            self._status.set_model_text(self.model_name)
        else:
            self._status.set_model_text("no model (loading failed)")

    def _on_model_ready(self, event: ModelReady) -> None:
        self.model_name = event.name
        self._model_label = None
        names = [info.name for info in event.layers]
        wanted = self._initial_layer
        if wanted and wanted not in names:
            self._notify(Notice(f"layer {wanted!r} is not in {event.name}; showing "
                                f"{event.default_layer}", NoticeLevel.WARNING))
        if wanted not in names:
            wanted = event.default_layer if event.default_layer in names else None
        if wanted is None and names:
            wanted = names[0]
        unit = self._initial_unit
        self._initial_layer = None
        self._initial_unit = None
        self._model.set_class_names(event.class_names)
        self._model.set_layers(event.layers, wanted, unit)
        for name in self._actions.group("model"):
            self._actions.set_checked(name, name == f"model:{event.name}")
        self._status.set_model_text(f"{event.name} · {event.device}")
        self._set_title(f"DeepVis Live — {event.name}")
        self._panes.grid.set_placeholder("Waiting for frames…")
        self._panes.unit.set_placeholder("Waiting for frames…")
        self._notify(Notice(f"{event.name} ready on {event.device}: {len(event.layers)} "
                            f"layers, {event.num_classes} classes"))

    def _on_unit_patches(self, event: UnitPatches) -> None:
        if (event.layer, event.unit) == (self._model.layer, self._model.unit):
            self._panes.patches.set_dataset(event.patches, event.note)
        self._panes.card.on_patches(event)  # it checks the unit itself

    def _on_preferred_image(self, event: PreferredImage) -> None:
        if (event.layer, event.unit) == (self._model.layer, self._model.unit):
            self._panes.preferred.show_image(event)
        if event.done:
            self._preferred.images_changed(event.layer, event.unit)

    def _on_job_progress(self, event: JobProgress) -> None:
        if event.kind in (JobKind.PREFERRED_GRID, JobKind.CONCEPTS, JobKind.ICONS,
                          JobKind.GROUP_ICONS):
            return
        self._actions[f"cancel:{event.kind.value}"].setEnabled(True)
        if event.kind in (JobKind.RENDER, JobKind.UNIT_CARD):
            return  # their panes show their steps; one per click would crowd the bar
        if event.kind == JobKind.RENDER_LAYER and event.done:
            self._preferred.on_render_batch()
        self._status.show_job(event)
        if event.kind == JobKind.RENDER_LAYER:
            self._panes.preferred.set_layer_job(event)
        elif event.kind in (JobKind.ABLATE, JobKind.CLASS_UNITS):
            self._panes.ablation.set_job(event)
        elif event.kind == JobKind.DISSECT:
            self._panes.dissection.set_job(event)

    def _on_job_finished(self, event: JobFinished) -> None:
        if event.kind in (JobKind.CONCEPTS, JobKind.ICONS, JobKind.GROUP_ICONS):
            return  # quick and quiet: the labels and icons themselves are the news
        if event.kind == JobKind.PREFERRED_GRID:
            self._preferred.on_request_ended()
            if not event.ok:
                self._notify(Notice(f"{JOB_NAMES[event.kind]}: {event.text}",
                                    NoticeLevel.WARNING))
            return  # quick and quiet: the grid itself is the news
        self._actions[f"cancel:{event.kind.value}"].setEnabled(False)
        self._status.end_job(event.kind)
        if event.kind == JobKind.RENDER_LAYER:
            self._panes.preferred.set_layer_job(None)
            self._preferred.on_render_finished()
        elif event.kind in (JobKind.ABLATE, JobKind.CLASS_UNITS):
            self._panes.ablation.set_job(None)
        elif event.kind == JobKind.DISSECT:
            self._panes.dissection.set_job(None)
        elif event.kind == JobKind.RENDER:
            self._panes.preferred.set_render_running(False)
        elif event.kind == JobKind.INTEGRATED:
            self._panes.blocks.integrated_button.setEnabled(True)
        level = NoticeLevel.INFO if event.ok else NoticeLevel.WARNING
        self._notify(Notice(f"{JOB_NAMES[event.kind]}: {event.text}", level))
        if event.ok and event.kind in (JobKind.SCAN, JobKind.RENDER_LAYER, JobKind.DISSECT):
            self._model.request_unit_again()  # the new cache has this unit's patches / image
