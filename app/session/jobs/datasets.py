"""Jobs over folders of images (scan, dissection, ablation curves, class units, concept
dictionaries, concept tests and the bias audit) and what they left in the cache (a
dissection's labels, direction layers' names).

Each calls its analysis' own job on a private copy of the model (the live worker keeps
running the original) and turns the analysis' typed result into the message the window
shows, returned with the one-line outcome.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.core.files import safe_filename
from app.core.jobs import Outcome, Progress
from app.core.messages import (
    AblationCurves,
    ClassUnitCurves,
    ConceptNames,
    ConceptUnit,
    LayerConcepts,
    ReportWritten,
)
from app.core.requests import (
    AblationRequest,
    AuditRequest,
    ClassUnitsRequest,
    ConceptNamesRequest,
    ConceptsRequest,
    DissectRequest,
    LayerConceptsRequest,
    RenameConceptRequest,
    ScanRequest,
    TcavRequest,
)
from app.core.settings import Settings
from app.engine.analyses.ablation import (
    ClassUnitsResult,
    CurveResult,
    class_units,
    find_dataset,
    layer_curves,
)
from app.engine.analyses.concepts import learn_concepts
from app.engine.analyses.dissection import (
    DissectionResult,
    LayerDissection,
    cached_layer,
    dissect,
)
from app.engine.analyses.patches import scan
from app.engine.analyses.tcav import TcavError, run_tcav
from app.engine.analyses.tcav.audit import AuditError, run_audit
from app.engine.analyses.tcav.audit_page import write_report
from app.engine.runtime.cache import cache_root, model_key
from app.engine.runtime.directions import DirectionSet, model_direction_sets, rename_direction
from app.engine.runtime.models import LoadedModel
from app.session.jobs.runner import JobContext, Refused, SessionJob, job_for


@job_for(ScanRequest)
def scan_job(ctx: JobContext, req: ScanRequest) -> SessionJob:
    """The top patches of every unit of the layer in the folder, into the cache."""
    ctx.folder(req.folder)
    return _scan(ctx, req)


def _scan(ctx: JobContext, req: ScanRequest) -> SessionJob:
    s, settings = ctx.settings.scan, ctx.settings
    # forkserver: forking a process that runs Qt and torch threads is not safe
    report = yield from scan(ctx.private_model(), req.folder, [req.layer], top_k=s.top_k,
                             batch_size=s.batch_size, workers=s.workers,
                             cache_dir=settings.cache.dir, crop_size=s.crop_size,
                             mp_context="forkserver")
    skipped = len(report.skipped)
    extra = f", {skipped} unreadable files skipped" if skipped else ""
    return Outcome(f"scan of {req.layer} done: {report.scanned} images{extra}")


@job_for(AblationRequest)
def ablation_job(ctx: JobContext, req: AblationRequest) -> SessionJob:
    """Ablation curves and class selectivity of the layer on the folder (`AblationCurves`)."""
    ctx.folder(req.folder)
    return _ablation(ctx, req)


def _ablation(ctx: JobContext, req: AblationRequest) -> SessionJob:
    a, settings = ctx.settings.ablate, ctx.settings
    model = ctx.private_model()
    result = yield from layer_curves(
        model, find_dataset(req.folder, model.class_names), req.folder, req.layer,
        seeds=a.seeds, points=a.points, batch_size=a.batch_size,
        max_pixels=settings.source.max_image_pixels, cache_dir=settings.cache.dir)
    skipped = len(result.skipped)
    extra = f", {skipped} unreadable files skipped" if skipped else ""
    return Outcome(f"ablation curves of {req.layer} on {result.images} images ready{extra}",
                   curves_message(result))


def curves_message(result: CurveResult) -> AblationCurves:
    """The message the Ablation tab plots, from the analysis' result."""
    rnd = result.random_curves()
    high, low = (np.asarray(result.curves[k]) for k in
                 ("selectivity_high_to_low", "selectivity_low_to_high"))
    curves = {
        "random": (rnd.mean(0), rnd.std(0)),
        "selective first": (high, np.zeros(len(high))),
        "selective last": (low, np.zeros(len(low))),
    }
    return AblationCurves(result.layer, np.asarray(result.fractions), curves,
                          np.asarray(result.selectivity), result.accuracy_means, result.images,
                          shifted_units=result.selectivity_shifted)


@job_for(ClassUnitsRequest)
def class_units_job(ctx: JobContext, req: ClassUnitsRequest) -> SessionJob:
    """The units of the layer that the class needs, on the folder (`ClassUnitCurves`)."""
    ctx.folder(req.folder)
    return _class_units(ctx, req)


def _class_units(ctx: JobContext, req: ClassUnitsRequest) -> SessionJob:
    model, settings = ctx.private_model(), ctx.settings
    result = yield from class_units(
        model, find_dataset(req.folder, model.class_names), req.folder, req.layer,
        req.class_index, batch_size=settings.ablate.batch_size,
        max_pixels=settings.source.max_image_pixels, cache_dir=settings.cache.dir)
    top = ", ".join(str(u) for u in result.ranking[:5])
    return Outcome(f"units of {req.layer} that {result.class_name!r} needs most: {top}",
                   class_units_message(result))


def class_units_message(r: ClassUnitsResult) -> ClassUnitCurves:
    return ClassUnitCurves(
        r.layer, r.class_index, r.class_name, tuple(r.ranking), tuple(r.counts),
        tuple(r.delete_top["class"]), tuple(r.delete_top["other"]),
        tuple(r.keep_top["class"]), tuple(r.keep_top["other"]), r.class_images,
        f"{r.class_images} images of the class, {r.other_images} of others; {r.note}")


def layer_concepts(settings: Settings, loaded: LoadedModel, layer: str) -> LayerConcepts:
    """The newest cached dissection of `layer` for the window (none: a how-to note)."""
    found = cached_layer(cache_root(settings.cache.dir) / model_key(loaded), layer)
    if found is None:
        return LayerConcepts(layer, "", (), note=(
            f"No dissection of {layer} yet. Analysis → Dissect a folder… names what its "
            "units detect: any photo folder gives colour concepts, a Broden-format folder "
            f"NetDissect's (or `deepvis dissect FOLDER --layers {layer}`)."))
    return concepts_message(*found)


@job_for(LayerConceptsRequest)
def layer_concepts_job(ctx: JobContext, req: LayerConceptsRequest) -> SessionJob:
    """`layer_concepts` as a (one-step) job, so the files are read off the GUI thread."""
    yield Progress(0, 1, f"concept labels of {req.layer}")
    message = layer_concepts(ctx.settings, ctx.loaded, req.layer)
    return Outcome(f"{len(message.labels())} concept labels of {req.layer}", message)


def concepts_message(result: DissectionResult, layer: LayerDissection) -> LayerConcepts:
    """The message the window shows, from the analysis' result."""
    summary = layer.summary
    by = tuple((c, v.interpretable, v.unique) for c, v in summary.by_category.items())
    units = tuple(ConceptUnit(u.unit, u.label, u.category, u.iou, u.interpretable,
                              u.top_images)
                  for u in layer.units)
    where = f"{result.dataset} ({result.kind}, {result.images} images, min IoU {result.min_iou})"
    return LayerConcepts(layer.layer, where, units, summary.interpretable, summary.unique, by)


@job_for(DissectRequest)
def dissect_job(ctx: JobContext, req: DissectRequest) -> SessionJob:
    """Concept labels of every unit of the layer on the folder, into the cache."""
    ctx.folder(req.folder)
    return _dissect(ctx, req)


def _dissect(ctx: JobContext, req: DissectRequest) -> SessionJob:
    d, settings = ctx.settings.dissect, ctx.settings
    # forkserver: forking a process that runs Qt and torch threads is not safe
    result = yield from dissect(
        ctx.private_model(), req.folder, [req.layer], quantile=d.quantile, min_iou=d.min_iou,
        batch_size=d.batch_size, workers=settings.scan.workers, cache_dir=settings.cache.dir,
        top_k=d.top_k, max_pixels=settings.source.max_image_pixels, mp_context="forkserver",
        spool_gb=d.spool_gb)
    message = concepts_message(result, result.layers[req.layer])
    return Outcome(f"dissection of {req.layer} done: {message.interpretable} of "
                   f"{len(message.units)} units detect a concept, {message.unique} distinct",
                   message)


# -- concept dictionaries -------------------------------------------------------------------

@job_for(ConceptsRequest)
def concepts_job(ctx: JobContext, req: ConceptsRequest) -> SessionJob:
    """K concepts of the layer learned on the folder, into the cache; the result is the
    dictionary, which the session makes a layer of the live view."""
    ctx.folder(req.folder)
    if req.layer not in ctx.channels:
        raise Refused(f"no layer {req.layer!r} to learn concepts of")
    return _learn(ctx, req)


def _learn(ctx: JobContext, req: ConceptsRequest) -> SessionJob:
    d = yield from learn_concepts(ctx.private_model(), req.folder, req.layer, req.k, req.method,
                                  cache_dir=ctx.settings.cache.dir)
    how = "cached" if d.cached else f"{d.images} images, {d.samples} samples"
    # the result is the layer's direction set: the session makes it a layer of the view
    return Outcome(f"{d.concept_layer} learned ({how}, relative error "
                   f"{d.relative_error:.3f})", d.direction_set())


# -- direction layers' names (concepts, CAVs, atlas cells alike) ----------------------------

def _direction_set(ctx: JobContext, layer: str) -> DirectionSet:
    """The set the live view shows as `layer` (the newest of that name)."""
    found = model_direction_sets(ctx.loaded, ctx.settings.cache.dir).get(layer)
    if found is None:
        raise Refused(f"no direction layer {layer!r} in the cache")
    return found


@job_for(ConceptNamesRequest)
def concept_names_job(ctx: JobContext, req: ConceptNamesRequest) -> SessionJob:
    yield Progress(0, 1, f"names of {req.layer}")
    d = _direction_set(ctx, req.layer)
    return Outcome(f"{d.k} unit names", ConceptNames(req.layer, d.names))


@job_for(RenameConceptRequest)
def rename_concept_job(ctx: JobContext, req: RenameConceptRequest) -> SessionJob:
    yield Progress(0, 1, f"renaming unit {req.unit} of {req.layer}")
    try:
        d = rename_direction(_direction_set(ctx, req.layer), req.unit, req.name)
    except (OSError, ValueError) as exc:
        raise Refused(str(exc).splitlines()[0]) from None
    return Outcome(f"concept {req.unit} of {req.layer} is {d.names[req.unit]!r}",
                   ConceptNames(req.layer, d.names))


# -- concept tests: TCAV, the bias audit ---------------------------------------------------

@job_for(TcavRequest)
def tcav_job(ctx: JobContext, req: TcavRequest) -> SessionJob:
    """TCAV of the concept folder for the class; the result is each layer's CAV as a
    direction set, which the session makes a layer of the live view."""
    for folder in (req.folder, req.random, req.examples):
        ctx.folder(folder)
    for layer in req.layers:
        if layer not in ctx.channels:
            raise Refused(f"no layer {layer!r} to test the concept at")
    return _tcav(ctx, req)


def _tcav(ctx: JobContext, req: TcavRequest) -> SessionJob:
    s = ctx.settings
    try:
        result = yield from run_tcav(
            ctx.private_model(), req.folder, [req.random], req.examples, req.target,
            list(req.layers), runs=req.runs, cache_dir=s.cache.dir,
            max_pixels=s.source.max_image_pixels, max_side=s.source.max_frame_side)
    except TcavError as exc:
        raise Refused(str(exc)) from None
    answers = "; ".join(
        f"{r.layer} {r.score:.2f} (random {float(np.mean(r.random_scores)):.2f}, "
        f"p {r.p_value:.2g}{', significant' if r.significant else ''})" for r in result.layers)
    return Outcome(f"{result.class_name} on the concept {Path(req.folder).name!r}: {answers}",
                   result.directions)


@job_for(AuditRequest)
def audit_job(ctx: JobContext, req: AuditRequest) -> SessionJob:
    """The audit's report page into the cache (a preview that opens it), and each group's
    direction as the result: units of the live view."""
    root = Path(ctx.folder(req.folder))
    groups = req.groups or tuple(sorted(
        d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")))
    if len(groups) < 2:
        raise Refused(f"a bias audit needs two group folders in {root} at least "
                      "(folder/<group>/<class>/images)")
    return _audit(ctx, req, root, groups)


def _audit(ctx: JobContext, req: AuditRequest, root: Path, groups: tuple[str, ...]
           ) -> SessionJob:
    s = ctx.settings
    try:
        result = yield from run_audit(
            ctx.private_model(), root, groups, list(req.layers), cache_dir=s.cache.dir,
            max_pixels=s.source.max_image_pixels, max_side=s.source.max_frame_side)
    except (AuditError, TcavError) as exc:
        raise Refused(str(exc)) from None
    out = cache_root(s.cache.dir) / "audits" / model_key(ctx.loaded) / safe_filename(root.name)
    try:
        page, _doc = write_report(result, out)
    except OSError as exc:
        raise Refused(f"cannot write the audit report in {out}: {exc}") from None
    gap = result.baseline.accuracy_gap
    summary = (f"{len(groups)} groups, accuracy gap {gap:.2f}; report {page}")
    yield Progress(1, 1, "report written", preview=ReportWritten(str(page), summary))
    seen = {d.name: d for _g, _c, r in result.tcav for d in r.directions}
    return Outcome(summary, tuple(seen.values()))
