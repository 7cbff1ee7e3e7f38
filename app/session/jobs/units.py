"""Jobs about units and their preferred images: the selected unit (patches, then its
preferred image), the unit card's extras, icons of units and of directions, a whole
layer's renders and the mosaic of its cached ones.

Each answers its request with the messages the window shows: previews and partial
results ride on the steps (`Progress.preview`), the final message on the `Outcome`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.core.jobs import Job, Outcome, Progress
from app.core.messages import (
    GroupIcons,
    Patch,
    PatchAttributions,
    PreferredGrid,
    PreferredImage,
    PreferredVariant,
    UnitFacts,
    UnitIcons,
    UnitPatches,
)
from app.core.requests import (
    GroupIconsRequest,
    PreferredGridRequest,
    PreferredImageRequest,
    RenderLayerRequest,
    UnitCardRequest,
    UnitIconsRequest,
)
from app.core.scan_results import load_scan
from app.core.settings import Settings
from app.engine.analyses.dissection import cached_layer, concept_text
from app.engine.analyses.featurevis import (
    RenderProgress,
    RenderResult,
    cached_unit,
    get_preset,
    render_units,
)
from app.engine.analyses.featurevis.presets import first_look
from app.engine.runtime.cache import cache_root, model_key
from app.engine.runtime.models import LoadedModel
from app.engine.workflows.activation_grid import direction_icons
from app.engine.workflows.colour_dependence import colour_dependence
from app.engine.workflows.patch_attributions import PATCH_RULE, patch_attributions
from app.engine.workflows.preferred_grid import preferred_mosaic
from app.session.catalog.cached import cached_curves, unit_ablation
from app.session.jobs.runner import JobContext, SessionJob, job_for

MONTAGE = 4  # preferred images on the unit card, rendered together with a diversity term
ICON_STEPS, ICON_SIZE = 48, 64  # a missing icon: a short, small render (its own cache key)


def unit_patches(settings: Settings, loaded: LoadedModel, layer: str,
                 unit: int) -> tuple[UnitPatches, float | None]:
    """The dataset top-k of a unit from a cached scan, and its best value (None: no scan)."""
    scan = load_scan(cache_root(settings.cache.dir), model_key(loaded), layer)
    if scan is None:
        note = (f"No scan of {layer} yet. Analysis → Scan folder for top patches…, or "
                f"`deepvis scan FOLDER --layers {layer}`.")
        return UnitPatches(layer, unit, (), note), None
    entries = scan.top(unit)
    crops = scan.unit_crops(unit)
    patches = tuple(
        Patch(np.ascontiguousarray(crops[i]), float(e.value), str(e.path), e.box)
        for i, e in enumerate(entries)
    )
    best = float(entries[0].value) if entries else None
    return UnitPatches(layer, unit, patches, dataset=scan.dataset), best


def _renders(settings: Settings, loaded: LoadedModel, layer: str,
             units: Sequence[int]) -> Job[RenderProgress, RenderResult]:
    """Preferred images of `units` with the settings' preset, cached.

    No private model here: the renderer makes its own private copy (and then folds and
    re-lays it out for speed, which only a copy may do); a second copy would only cost time.
    """
    r = settings.render
    return render_units(loaded, layer, units, preset=r.preset,
                        steps=r.steps or None, size=r.size or None, seed=r.seed,
                        cache_root=cache_root(settings.cache.dir), batch_size=r.batch_size)


@job_for(PreferredImageRequest)
def preferred_image_job(ctx: JobContext, req: PreferredImageRequest) -> SessionJob:
    """Patches at once, then the preferred image: from the cache, or rendered with previews
    after a first look where the preset's own first preview comes late (`first_look`: a
    short render of the same recipe, shown long before that; the full render does not
    depend on it)."""
    layer, unit = req.layer, req.unit
    patches, best = unit_patches(ctx.settings, ctx.loaded, layer, unit)
    text = f"rendering {layer} unit {unit}"  # the tab shows the steps
    yield Progress(0, 1, text, preview=patches)
    yield from _first_look(ctx, layer, unit, best, text)
    renders = _renders(ctx.settings, ctx.loaded, layer, [unit])
    try:
        for p in renders:
            image = None
            if p.images is not None and p.activations is not None:
                image = PreferredImage(layer, unit, p.images[0], float(p.activations[0]),
                                       p.step, p.total, p.final, best)
            yield Progress(0, 1, text, preview=image)
    finally:
        renders.close()
    return Outcome(f"preferred image of {layer} unit {unit} ready")


def _first_look(ctx: JobContext, layer: str, unit: int, best: float | None,
                text: str) -> Job[Progress, None]:
    """The first-look render's image as a preview at step 0 of the full render, where the
    preset has a first look and the full render is not cached. Nothing of it is cached:
    the full render's cache key and result stay what they are without it (the same seed
    gives it generators of its own)."""
    r = ctx.settings.render
    full = get_preset(r.preset).with_overrides(r.steps or None, r.size or None)
    look = first_look(full)
    if look is None or cached_unit(ctx.loaded, cache_root(ctx.settings.cache.dir), layer,
                                   unit, full, seed=r.seed) is not None:
        return None
    quick = render_units(ctx.loaded, layer, [unit], preset=look, seed=r.seed)
    try:
        for p in quick:
            image = None
            if p.final and p.images is not None and p.activations is not None:
                image = PreferredImage(layer, unit, p.images[0], float(p.activations[0]), 0,
                                       full.steps, False, best)
            yield Progress(0, 1, text, preview=image)
    finally:
        quick.close()
    return None


@job_for(RenderLayerRequest)
def render_layer_job(ctx: JobContext, req: RenderLayerRequest) -> SessionJob | None:
    """Every unit of the layer, progress counted in finished units."""
    if req.layer not in ctx.channels:
        return None
    return _render_layer(ctx, req.layer, ctx.channels[req.layer])


def _render_layer(ctx: JobContext, layer: str, channels: int) -> SessionJob:
    done = 0
    yield Progress(0, channels, f"rendering {layer}…")
    renders = _renders(ctx.settings, ctx.loaded, layer, range(channels))
    try:
        for p in renders:
            done += len(p.units) if p.final else 0
            yield Progress(done, channels, f"{done} / {channels} units of {layer}")
    finally:
        renders.close()
    return Outcome(f"preferred images of all {channels} units of {layer} cached")


@job_for(PreferredGridRequest)
def preferred_grid_job(ctx: JobContext, req: PreferredGridRequest) -> SessionJob | None:
    """The layer's cached preferred images as one mosaic (`PreferredGrid`); renders nothing."""
    if req.layer not in ctx.channels:
        return None
    return _preferred_grid(ctx, req.layer, ctx.channels[req.layer], req.aspect)


def _preferred_grid(ctx: JobContext, layer: str, channels: int, aspect: float) -> SessionJob:
    root = cache_root(ctx.settings.cache.dir)
    mosaic, g, rendered = yield from preferred_mosaic(ctx.loaded, root, ctx.settings.render,
                                                      layer, channels, aspect)
    return Outcome(f"{len(rendered)} of {channels} preferred images of {layer}",
                   PreferredGrid(layer, mosaic, g, rendered))


def unit_facts(settings: Settings, loaded: LoadedModel, layer: str, unit: int,
               channels: int) -> UnitFacts:
    """The unit's class selectivity and concept label, as far as the caches know them."""
    curves = cached_curves(loaded, layer, channels, settings.cache.dir)
    selectivity = None
    hint = (f"No ablation curves of {layer} cached: Analysis → Ablation curves on a "
            "folder… gives every unit's class selectivity")
    if curves is not None and 0 <= unit < curves.units:
        a = unit_ablation(curves, unit)
        names = loaded.class_names
        cls = names[a.preferred_class] if 0 <= a.preferred_class < len(names) else "?"
        selectivity = f"{a.index:.2f} (rank {a.rank + 1} of {curves.units}), prefers {cls}"
        hint = f"on {curves.images} images of {curves.dataset or '?'}"
    found = cached_layer(cache_root(settings.cache.dir) / model_key(loaded), layer)
    concept, threshold = None, None
    concept_hint = (f"No dissection of {layer} cached: Analysis → Dissect… or `deepvis "
                    f"dissect FOLDER --layers {layer}` names what units detect")
    if found is not None and 0 <= unit < len(found[1].units):
        named = found[1].units[unit]
        if named.interpretable:  # its mask is the concept's only where it has one
            concept, threshold = concept_text(named), named.threshold
        else:
            concept_hint = (f"detects no concept of {found[0].dataset} (best: "
                            f"{concept_text(named)}, below the minimum)")
    return UnitFacts(layer, unit, selectivity, hint, concept, concept_hint, threshold)


@job_for(UnitCardRequest)
def unit_card_job(ctx: JobContext, req: UnitCardRequest) -> SessionJob | None:
    """What the unit card adds to the selection's patches and preferred image: the facts,
    the attribution of each top patch (cached with the scan), and MONTAGE preferred images
    optimized together with a diversity term (cached as one set), previews as they come.

    Independent seeds of one unit tend to converge on the same picture; pushed apart, the
    images show what the unit does not care about (Yosinski et al.'s invariances)."""
    if req.layer not in ctx.channels:
        return None
    return _unit_card(ctx, req.layer, req.unit, ctx.channels[req.layer])


def _unit_card(ctx: JobContext, layer: str, unit: int, channels: int) -> SessionJob:
    settings, loaded = ctx.settings, ctx.loaded
    title = f"unit card of {layer} unit {unit}"
    yield Progress(0, 2, title, preview=unit_facts(settings, loaded, layer, unit, channels))
    scan_result = load_scan(cache_root(settings.cache.dir), model_key(loaded), layer)
    if scan_result is not None and scan_result.top(unit):
        images = patch_attributions(loaded, scan_result, unit,
                                    max_pixels=settings.source.max_image_pixels)
        yield Progress(0, 2, title, preview=PatchAttributions(layer, unit, tuple(images),
                                                              str(PATCH_RULE)))
        colour = colour_dependence(ctx.private_model(), scan_result, unit,
                                   settings.source.max_image_pixels)
        if colour is not None:
            yield Progress(0, 2, title, preview=colour)
    yield Progress(1, 2, f"{title}: preferred images")
    r = settings.render
    renders = render_units(loaded, layer, [unit], preset=r.preset, steps=r.steps or None,
                           size=r.size or None, seed=r.seed,
                           cache_root=cache_root(settings.cache.dir), batch_size=MONTAGE,
                           diversity=MONTAGE)
    try:
        for p in renders:
            step = Progress(1 + p.done, 1 + p.total, f"{title}: preferred images, step {p.done}")
            if p.images is None or p.activations is None:
                yield step
                continue
            for index, (image, activation) in enumerate(zip(p.images, p.activations,
                                                            strict=True)):
                yield Progress(step.done, step.total, step.text, preview=PreferredVariant(
                    layer, unit, index, r.seed, image, float(activation), p.final))
    finally:
        renders.close()
    return Outcome(f"{title} complete")


@job_for(UnitIconsRequest)
def unit_icons_job(ctx: JobContext, req: UnitIconsRequest) -> SessionJob | None:
    """Icons of the units: the unit's cached preferred image where there is one (the
    settings' preset), else a short small render, sent as each batch is done."""
    if req.layer not in ctx.channels:
        return None
    return _unit_icons(ctx, req.layer, req.units)


def _unit_icons(ctx: JobContext, layer: str, units: Sequence[int]) -> SessionJob:
    r, root, loaded = ctx.settings.render, cache_root(ctx.settings.cache.dir), ctx.loaded
    hits, missing = [], []
    for unit in dict.fromkeys(int(u) for u in units):
        hit = cached_unit(loaded, root, layer, unit, r.preset, r.steps or None,
                          r.size or None, r.seed)
        hit = hit or cached_unit(loaded, root, layer, unit, r.preset, ICON_STEPS, ICON_SIZE,
                                 r.seed)
        if hit is None:
            missing.append(unit)
        else:
            hits.append((unit, hit[0]))
    total = max(len(missing), 1)
    yield Progress(0, total, f"icons of {layer}",
                   preview=UnitIcons(layer, tuple(hits)) if hits else None)
    done = 0
    renders = render_units(loaded, layer, missing, preset=r.preset, steps=ICON_STEPS,
                           size=ICON_SIZE, seed=r.seed, cache_root=root, batch_size=8)
    try:
        for p in renders:
            icons = None
            if p.final and p.images is not None:
                icons = UnitIcons(layer, tuple(zip(p.units, p.images, strict=True)))
                done += len(p.units)
            yield Progress(done, total, f"icons of {layer}", preview=icons)
    finally:
        renders.close()
    return Outcome(f"{len(hits) + done} icons of {layer}")


@job_for(GroupIconsRequest)
def group_icons_job(ctx: JobContext, req: GroupIconsRequest) -> SessionJob:
    """The preferred image of each neuron group's direction ((k, C) channel factors), made
    once and cached under the model's cache folder (`GroupIcons`)."""
    folder = cache_root(ctx.settings.cache.dir) / model_key(ctx.loaded) / "direction-icons"
    r = ctx.settings.render
    keys, icons, rendered = yield from direction_icons(ctx.loaded, req.layer, req.directions,
                                                       r.preset, r.seed, folder)
    return Outcome(f"icons of {len(keys)} neuron groups of {req.layer} ({rendered} rendered)",
                   GroupIcons(req.layer, keys, icons))
