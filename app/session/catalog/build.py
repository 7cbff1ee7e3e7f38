"""`build_catalog`: the catalogue job — render, gather what is cached, write the site.

Two stages, one progress bar: first the preferred images (the settings' preset, seeds
`seed, seed+1, …`, each seed one `render_units` job over the layer's units, so the render
cache serves every image already made, the window's too — its seed is the first), then the
pages, one step per unit. Every file is written atomically; the site's `catalog.json`
(what was built, for scripts) last.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.core import html_pages as pages
from app.core.atomic import atomic_write_bytes, atomic_write_json
from app.core.files import safe_filename
from app.core.jobs import Job, Progress
from app.core.scan_results import ScanResult
from app.core.settings import Settings
from app.engine.analyses.ablation import CurveResult
from app.engine.analyses.featurevis import RenderResult, get_preset, render_units
from app.engine.analyses.featurevis.render_cache import encode_png
from app.engine.runtime.cache import cache_root, model_key
from app.engine.runtime.directions import is_direction_layer, split_direction_layer
from app.engine.runtime.models import LoadedModel
from app.engine.workflows.patch_attributions import PATCH_RULE, patch_attributions
from app.session.catalog.cached import (
    cached_curves,
    cached_scan,
    concept_labels,
    unit_ablation,
)

THUMB_PX = 96  # side of a unit's tile in its layer's grid
PATCH_PX = 112  # side a top patch is shown at on its unit's page
STEPS_PER_RENDER = 1000  # progress steps one render job is spread over


@dataclass(frozen=True)
class LayerRequest:
    """One layer to catalogue: its output shape (C, H, W) and which of its units."""

    layer: str
    shape: tuple[int, ...]
    units: tuple[int, ...]
    names: tuple[str, ...] = ()  # a concept layer's: one per unit (its concepts' names)


@dataclass(frozen=True)
class CatalogRequest:
    layers: tuple[LayerRequest, ...]
    out: Path
    seeds: int = 4  # preferred images per unit


@dataclass(frozen=True)
class LayerCatalog:
    """What a layer's part of the site holds."""

    layer: str
    folder: str  # relative to the site's root
    channels: int
    units: tuple[int, ...]
    scan: bool  # top patches shown (a scan was cached)
    ablation: bool  # selectivity and curves shown (an ablation result was cached)
    concepts: bool  # concept labels shown (always False until dissection exists)
    names: tuple[str, ...] = ()  # a concept layer's unit names, in `units` order


@dataclass(frozen=True)
class CatalogResult:
    out: Path
    index: Path
    model: str
    model_key: str
    preset: str
    steps: int
    size: int
    seeds: tuple[int, ...]
    layers: tuple[LayerCatalog, ...]
    rendered: int  # preferred images optimized by this run
    from_cache: int  # preferred images the render cache already held
    files: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out), "index": str(self.index), "model": self.model,
            "model_key": self.model_key, "preset": self.preset, "steps": self.steps,
            "size": self.size, "seeds": list(self.seeds), "rendered": self.rendered,
            "from_cache": self.from_cache, "files": self.files,
            "seconds": round(self.seconds, 3),
            "layers": [{"layer": c.layer, "index": f"{c.folder}/index.html",
                        "channels": c.channels, "units": list(c.units),
                        "pages": [f"{c.folder}/{u}.html" for u in c.units],
                        "scan": c.scan, "ablation": c.ablation, "concepts": c.concepts,
                        **({"names": list(c.names)} if c.names else {})}
                       for c in self.layers],
        }


def build_catalog(settings: Settings, loaded: LoadedModel,
                  request: CatalogRequest) -> Job[Progress, CatalogResult]:
    """Write the catalogue of `request` into `request.out` (a job; see the module doc)."""
    started = time.perf_counter()
    r = settings.render
    preset = get_preset(r.preset).with_overrides(r.steps or None, r.size or None)
    seeds = tuple(r.seed + i for i in range(request.seeds))
    root = cache_root(settings.cache.dir)
    key = model_key(loaded)
    layer_pages = sum(len(lr.units) for lr in request.layers) + len(request.layers)
    total = len(request.layers) * len(seeds) * STEPS_PER_RENDER + layer_pages + 1  # + index

    site = _Site(request.out, loaded, key, preset.name, preset.steps, preset.size, layer_pages)
    renders_total = len(request.layers) * len(seeds)
    catalogs = []
    rendered = cached = done = 0
    for i, lr in enumerate(request.layers):
        # one layer's images at a time: a whole model need not fit in memory
        renders: list[RenderResult] = []
        for seed in seeds:
            text = (f"render {i * len(seeds) + len(renders) + 1}/{renders_total}: "
                    f"{lr.layer} seed {seed}")
            job = render_units(loaded, lr.layer, lr.units, preset, seed=seed,
                               cache_root=root, batch_size=r.batch_size)
            result = yield from _relay(job, done, total, text)
            rendered += result.cached.count(False)
            cached += result.cached.count(True)
            renders.append(result)
            done += STEPS_PER_RENDER
        catalog = yield from site.write_layer(
            lr, renders, seeds, root, settings.cache.dir,
            None if i == 0 else request.layers[i - 1].layer,
            None if i + 1 == len(request.layers) else request.layers[i + 1].layer,
            done, total)
        done += len(lr.units) + 1
        catalogs.append(catalog)
    index = site.write_index(request.layers, catalogs)
    built = CatalogResult(request.out, index, loaded.name, key, preset.name, preset.steps,
                           preset.size, seeds, tuple(catalogs), rendered, cached,
                           site.files + 1, time.perf_counter() - started)
    atomic_write_json(request.out / "catalog.json", built.to_json())
    yield Progress(total, total, f"catalogue written: {index}")
    return built


def _relay(job: Generator[Progress, None, RenderResult], offset: int, total: int,
           text: str) -> Generator[Progress, None, RenderResult]:
    """Run a render job as one stretch of the catalogue's progress bar."""
    try:
        while True:
            try:
                p = next(job)
            except StopIteration as stop:
                return stop.value
            part = int(STEPS_PER_RENDER * min(p.done, p.total) / max(p.total, 1))
            yield Progress(offset + part, total, f"{text}, {p.line()}")
    finally:  # a cancel lands at our yield: the render's own cleanup runs now, not at GC
        job.close()


def _shown_px(size: int) -> int:
    """The side a preferred image is shown at: small renders enlarged to stay legible."""
    return max(160, min(size, 224))


def _png(image: np.ndarray, px: int | None = None) -> bytes:
    if px is not None and image.shape[0] != px:
        image = cv2.resize(image, (px, px), interpolation=cv2.INTER_AREA
                           if image.shape[0] > px else cv2.INTER_LINEAR)
    return encode_png(np.ascontiguousarray(image))


class _Site:
    """Writes the site's files; counts them."""

    def __init__(self, out: Path, loaded: LoadedModel, key: str, preset: str, steps: int,
                 size: int, pages_total: int) -> None:
        self.out, self.loaded, self.key = out, loaded, key
        self.files = 0
        self.pages = 0  # unit and layer pages written, of `pages_total`: the progress line
        self.pages_total = pages_total
        self.footer = (f"DeepVis catalogue of {loaded.name} (cache key {key}); preferred "
                       f"images: preset {preset}, {steps} steps, {size} px. Written "
                       f"{time.strftime('%Y-%m-%d %H:%M')} by deepvis catalog.")

    def write(self, relative: str, data: bytes) -> None:
        atomic_write_bytes(self.out / relative, data)
        self.files += 1

    def class_name(self, index: int) -> str:
        names = self.loaded.class_names
        return f"{names[index]} (#{index})" if 0 <= index < len(names) else f"#{index}"

    def write_layer(self, lr: LayerRequest, renders: Sequence[RenderResult],
                    seeds: Sequence[int], root: Path, cache_dir: str, prev_layer: str | None,
                    next_layer: str | None, done: int, total: int
                    ) -> Generator[Progress, None, LayerCatalog]:
        folder = safe_filename(lr.layer)
        channels = lr.shape[0]
        scan = cached_scan(root, self.key, lr.layer, channels)
        curves = cached_curves(self.loaded, lr.layer, channels, cache_dir)
        concepts = concept_labels(root, self.key, lr.layer)
        shape = "×".join(str(d) for d in lr.shape)
        names = [lr.names[u] if u < len(lr.names) else "" for u in lr.units]
        source = split_direction_layer(lr.layer)[0]  # a concept layer's units: named directions
        what = "concept" if is_direction_layer(lr.layer) else "channel"
        tiles = []
        for i, unit in enumerate(lr.units):
            self.pages += 1
            yield Progress(done + i, total, f"page {self.pages}/{self.pages_total}: "
                                            f"{lr.layer} unit {unit}")
            preferred = []
            for s, (seed, res) in enumerate(zip(seeds, renders, strict=True)):
                name = f"{unit}/preferred-{s}.png"
                self.write(f"{folder}/{name}", _png(res.images[i]))
                preferred.append(pages.Picture(
                    name, f"seed {seed}\nactivation {float(res.activations[i]):.3g}",
                    f"preferred image, seed {seed}, {what} mean "
                    f"{float(res.activations[i]):.4g}"))
            self.write(f"{folder}/{unit}/thumb.png", _png(renders[0].images[i], THUMB_PX))
            tiles.append(pages.Picture(
                f"{unit}/thumb.png", f"{unit} {names[i]}" if names[i] else str(unit),
                f"unit {unit}: {names[i]}" if names[i] else f"unit {unit}",
                href=f"{unit}.html"))
            sections = [pages.Section(
                "Preferred images", tuple(preferred), _shown_px(renders[0].preset.size),
                subtitle=f"{renders[0].preset.name} preset, {renders[0].preset.steps} steps, "
                f"{renders[0].preset.size} px; activation: the {what}'s mean"
                + (f" code (optimized: its direction in {source}, dot × max(cos, 0.1)²)"
                   if what == "concept" else ""),
                note="" if len(preferred) > 1 else "one seed only (--seeds 1)")]
            sections.append(self._patches(folder, lr.layer, unit, scan))
            if scan is not None and scan.top(unit):
                sections.append(self._patch_attributions(folder, unit, scan))
            sections.append(self._ablation(lr.layer, unit, curves))
            sections.append(self._concept(lr.layer, unit, concepts))
            prev = lr.units[i - 1] if i > 0 else None
            nxt = lr.units[i + 1] if i + 1 < len(lr.units) else None
            subtitle = f"{self.loaded.name} · output {shape}"
            if what == "concept":
                subtitle += (f" · {names[i] or f'concept {unit}'}: one of {channels} "
                             f"directions of {source}")
            page = pages.unit_page(self.loaded.name, lr.layer, unit, channels, subtitle,
                                   prev, nxt, sections, self.footer)
            self.write(f"{folder}/{unit}.html", page.encode("utf-8"))
        self.pages += 1
        yield Progress(done + len(lr.units), total, f"page {self.pages}/{self.pages_total}: "
                                                    f"{lr.layer} index")
        extra = []
        if curves is not None:
            extra.append(pages.Section("Ablation curves", rows=self._curve_rows(curves),
                                       curves=_curves(curves)))
        lines = [f"{len(lr.units)} of {channels} units catalogued",
                 "top patches: " + ("yes" if scan is not None else "no scan cached"),
                 "ablation: " + ("yes" if curves is not None else "none cached")]
        page = pages.layer_page(self.loaded.name, lr.layer,
                                f"{self.loaded.name} · output {shape} · " + " · ".join(lines),
                                tiles, _layer_link(prev_layer, "← "),
                                _layer_link(next_layer, " →"), extra, self.footer)
        self.write(f"{folder}/index.html", page.encode("utf-8"))
        return LayerCatalog(lr.layer, folder, channels, lr.units, scan is not None,
                            curves is not None, bool(concepts),
                            tuple(names) if any(names) else ())

    def write_index(self, requests: Sequence[LayerRequest],
                    catalogs: Sequence[LayerCatalog]) -> Path:
        rows = [(pages.Link(c.layer, f"{c.folder}/index.html"),
                 ("×".join(str(d) for d in lr.shape), f"{len(c.units)} of {c.channels}",
                  "yes" if c.scan else "—", "yes" if c.ablation else "—",
                  "yes" if c.concepts else "—"))
                for lr, c in zip(requests, catalogs, strict=True)]
        page = pages.site_page(
            self.loaded.name, f"{len(catalogs)} layers, "
            f"{sum(len(c.units) for c in catalogs)} unit pages · open a layer for its grid of "
            "preferred images, a tile for the unit's page", rows,
            ("layer", "output", "units", "top patches", "ablation", "concepts"), self.footer)
        self.write("index.html", page.encode("utf-8"))
        return self.out / "index.html"

    def _patches(self, folder: str, layer: str, unit: int,
                 scan: ScanResult | None) -> pages.Section:
        title = "Top dataset patches"
        if scan is None:
            return pages.Section(title, note=(
                f"No scan of {layer} is cached for this model, so there are no dataset "
                f"patches. Make one with `deepvis scan FOLDER --layers {layer}` (same "
                "--model and --settings), then run deepvis catalog again."))
        entries = scan.top(unit)
        crops = scan.unit_crops(unit)
        pictures = []
        for r, entry in enumerate(entries):
            name = f"{unit}/patch-{r}.png"
            self.write(f"{folder}/{name}", _png(crops[r]))
            y0, x0, y1, x1 = entry.box
            pictures.append(pages.Picture(
                name, f"{entry.value:.3g}\n{os.path.basename(entry.path)}",
                f"{entry.path}: max {entry.value:.4g} at map ({entry.y}, {entry.x}); "
                f"receptive field rows {y0}-{y1}, columns {x0}-{x1}"))
        roots = ", ".join(d.get("root", "?") for d in scan.meta.get("datasets", []))
        note = "" if pictures else "the scanned dataset had no images for this unit"
        return pages.Section(
            title, tuple(pictures), PATCH_PX, note=note,
            subtitle=f"top {len(entries)} of {scan.meta.get('files_scanned', '?')} images "
            f"in {roots}; value: the unit's map maximum, crop: its receptive field")

    def _patch_attributions(self, folder: str, unit: int, scan: ScanResult) -> pages.Section:
        """The "deconv of the top 9": each patch's attribution, in the patches' order."""
        images = patch_attributions(self.loaded, scan, unit)  # cached with the scan
        pictures = []
        for r, (image, entry) in enumerate(zip(images, scan.top(unit), strict=True)):
            name = f"{unit}/patch-{r}-attribution.png"
            self.write(f"{folder}/{name}", _png(image))
            pictures.append(pages.Picture(
                name, f"{entry.value:.3g}", f"{PATCH_RULE} of unit {unit} at map "
                f"({entry.y}, {entry.x}) of {entry.path}"))
        return pages.Section(
            "Attributions of the top patches", tuple(pictures), PATCH_PX,
            subtitle=f"{PATCH_RULE} from the unit's maximum in each patch: grey is no "
            "signal, colour what raises the unit (the toolbox's deconv of the top 9)")

    def _curve_rows(self, c: CurveResult) -> tuple[tuple[str, str], ...]:
        rows = [("Measured on", f"{c.images} images of {c.dataset or '?'} "
                 f"({c.accuracy_means}; method: {c.method})"),
                ("Intact", f"{c.intact_accuracy:.1%}")]
        if c.selectivity_shifted:
            rows.append(("Signed layer", f"{c.selectivity_shifted} of {c.units} units have a "
                         "negative class mean: their class means were shifted so the lowest "
                         "reads 0 before the index (Morcos et al. assume ReLU outputs)"))
        if "selectivity_note" in c.extra:
            rows.append(("Note", str(c.extra["selectivity_note"])))
        return tuple(rows)

    def _ablation(self, layer: str, unit: int, c: CurveResult | None) -> pages.Section:
        title = "Class selectivity and ablation"
        if c is None:
            return pages.Section(title, note=(
                f"No ablation curves of {layer} are cached for this model. Make them with "
                f"`deepvis ablate DATASET --layer {layer}`, then run deepvis catalog again."))
        a = unit_ablation(c, unit)
        k_prev, k = c.deleted[a.level - 1], c.deleted[a.level]
        rows = (
            ("Selectivity index", f"{a.index:.3f} — rank {a.rank + 1} of {c.units} in "
             f"{layer} (1 = most class-selective)"),
            ("Preferred class", self.class_name(a.preferred_class)),
            ("Deleted in the curve", f"most-selective-first: in the step from {k_prev} to {k} "
             f"units deleted ({c.fractions[a.level]:.0%} of the layer), {_measure(c)} "
             f"{a.accuracy_before:.1%} → {a.accuracy_after:.1%} (random order at "
             f"{k} units: {a.random_after:.1%})"),
            ("Alone", "the effect of deleting only this unit is not measured by the curves "
             f"(they delete units in groups); `deepvis predict IMAGE --ablate {layer}:{unit}` "
             "shows it on chosen images"),
            *self._curve_rows(c),
        )
        return pages.Section(title, rows=rows, curves=_curves(c, c.fractions[a.level]))

    def _concept(self, layer: str, unit: int, labels: dict[int, str] | None) -> pages.Section:
        title = "Concept label"
        if labels is None:
            return pages.Section(title, note=(
                f"No dissection of {layer} is cached for this model. Make one with "
                f"`deepvis dissect FOLDER --layers {layer}` (any photo folder gives colour "
                "concepts; a Broden-format folder gives NetDissect's), then run deepvis "
                "catalog again."))
        if unit not in labels:
            return pages.Section(title, note=(
                f"dissection of {layer} found no concept this unit detects (best IoU below "
                "the minimum)"))
        return pages.Section(title, rows=(("Concept", labels[unit]),))


def _measure(c: CurveResult) -> str:
    """What the curves measure, in a sentence: accuracy needs labels (class folders); on
    any other folder they measure how often the network still gives its intact top-1."""
    return "accuracy" if c.labeled else "agreement with the intact top-1"


def _curves(c: CurveResult, marker: float | None = None) -> pages.Curves:
    return pages.Curves(
        tuple(c.fractions),
        {"random (mean)": c.random_curves().mean(0).tolist(),
         "selective first": c.curves["selectivity_high_to_low"],
         "selective last": c.curves["selectivity_low_to_high"]},
        marker, c.accuracy_means)


def _layer_link(layer: str | None, arrow: str) -> pages.Link | None:
    """A link from one layer's index to a neighbour's (None: no neighbour that way)."""
    if layer is None:
        return None
    text = f"{arrow.strip()} {layer}" if arrow.startswith("←") else f"{layer} {arrow.strip()}"
    return pages.Link(text, f"../{safe_filename(layer)}/index.html")
