"""The activation atlas for the window: built on a folder (Analysis menu) or on the frames
the session has seen (Analysis → Atlas of this session: `session.seen_frames`), or the
newest one the cache holds of a layer (the Atlas tab opened; `deepvis atlas` made it, say).

The build runs the analysis' job on a private copy of the model, cuts each cell's top
samples from their images, then renders the cells' icons (the command's settings, so
either reuses what the other rendered). Its first look,
with the cells shaded by density, rides on a step's preview while the icons render; the
result is the same message with the icons. The atlas job also writes the cells as the
direction layer `LAYER@atlasN` (`write_cell_directions`), named in the message.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.core.atlas_messages import AtlasCell, AtlasReady
from app.core.jobs import Job, Outcome, Progress
from app.core.requests import AtlasRequest, CachedAtlasRequest, SessionAtlasRequest
from app.engine.analyses.atlas import (
    Atlas,
    AtlasError,
    atlas_tag,
    build_atlas,
    cell_directions_folder,
    cell_examples,
    latest_atlas,
    write_cell_directions,
)
from app.engine.runtime.directions import direction_layer_name, load_direction_set
from app.engine.workflows.atlas_icons import (
    ICON_SIZE,
    ICON_STEPS,
    render_icons,
    stored_icons,
    write_icons,
)
from app.session.jobs.runner import JobContext, Refused, SessionJob, job_for

MIN_SESSION_FRAMES = 4  # fewer make no map: UMAP needs neighbours


def atlas_message(atlas: Atlas, directions_folder: str,
                  icons: dict[int, np.ndarray] | None,
                  examples: dict[int, list[np.ndarray]] | None = None) -> AtlasReady:
    """The message the Atlas tab shows; `icons` None: not rendered yet."""
    cells = tuple(
        AtlasCell(c.x, c.y, c.count, c.label, c.score,
                  None if icons is None else icons.get(i),
                  "" if icons is None or i not in icons
                  else str(atlas.folder / "icons" / f"cell-{i:04d}.png"),
                  tuple((examples or {}).get(i, ())))
        for i, c in enumerate(atlas.cells))
    return AtlasReady(atlas.layer, atlas.grid, cells,
                      direction_layer_name(atlas.layer, atlas_tag(atlas.grid)),
                      directions_folder, str(atlas.folder / "atlas.png"), atlas.images,
                      icons_done=icons is not None)


@job_for(AtlasRequest)
def atlas_job(ctx: JobContext, req: AtlasRequest) -> SessionJob:
    """The layer's atlas on the folder, its icons, and its cells as a direction layer."""
    ctx.folder(req.folder)
    if req.layer not in ctx.channels:
        raise Refused(f"no layer {req.layer!r} to make an atlas of")
    if req.grid <= 0:
        raise Refused(f"the atlas grid must be positive, got {req.grid}")
    return _build(ctx, req)


@job_for(SessionAtlasRequest)
def session_atlas_job(ctx: JobContext, req: SessionAtlasRequest) -> SessionJob:
    """The layer's atlas of the frames the session has seen (`seen_frames`), as a folder's."""
    if req.layer not in ctx.channels:
        raise Refused(f"no layer {req.layer!r} to make an atlas of")
    if req.grid <= 0:
        raise Refused(f"the atlas grid must be positive, got {req.grid}")
    if ctx.seen_frames is None:
        raise Refused("this session keeps no frames")
    return _session(ctx, req, ctx.seen_frames)


def _session(ctx: JobContext, req: SessionAtlasRequest, seen: Callable[[], Path]
             ) -> SessionJob:
    yield Progress(0, 1, "the frames seen so far")
    folder = seen()
    kept = sum(1 for _ in folder.glob("*.jpg"))
    if kept < MIN_SESSION_FRAMES:
        raise Refused(f"this session has kept {kept} frame{'s' if kept != 1 else ''} (one a "
                      f"second of what the source shows): show it more, then ask again")
    # a cancelled one leaves no checkpoint: its snapshot of the frames is not kept to resume
    return (yield from _build(ctx, AtlasRequest(str(folder), req.layer, req.grid),
                              keep_partial=False))


def _build(ctx: JobContext, req: AtlasRequest, keep_partial: bool = True) -> SessionJob:
    s = ctx.settings
    loaded = ctx.private_model()
    try:
        atlas = yield from build_atlas(
            loaded, req.folder, req.layer, grid=req.grid, cache_dir=s.cache.dir,
            max_pixels=s.source.max_image_pixels, max_side=s.source.max_frame_side,
            keep_partial=keep_partial)
    except AtlasError as exc:  # the folder's fault (no images, too few): the user's line
        raise Refused(str(exc)) from None
    folder = str(atlas.cells_folder)
    yield from _cells_join_the_view(folder)
    examples = yield from cell_examples(loaded, atlas, max_pixels=s.source.max_image_pixels,
                                        max_side=s.source.max_frame_side)
    yield Progress(0, len(atlas.cells), "icons",
                   preview=atlas_message(atlas, folder, None, examples))
    steps, size = ICON_STEPS, ICON_SIZE  # read here: a test makes them small
    icons = yield from render_icons(loaded, atlas, steps, size)
    write_icons(atlas, icons, steps, size)
    message = atlas_message(atlas, folder, icons, examples)
    how = "cached" if atlas.cached else f"{atlas.images} images"
    return Outcome(f"atlas of {atlas.layer}: {len(atlas.cells)} cells ({how}); its cells are "
                   f"the layer {message.direction_layer}", message)


def _cells_join_the_view(folder: str) -> Job[Progress, None]:
    """The cells' direction set as a preview: the session makes it a layer of the live view
    (a preview joins the layers without being shown; the tab keeps the source layer)."""
    cells = load_direction_set(folder)
    if cells is not None:
        yield Progress(0, 1, "the cells join the layers", preview=cells)
    return None


@job_for(CachedAtlasRequest)
def cached_atlas_job(ctx: JobContext, req: CachedAtlasRequest) -> SessionJob:
    """The newest cached atlas of the layer, with whatever icons it has; none: no result."""
    yield Progress(0, 1, f"atlas of {req.layer}")
    atlas = latest_atlas(ctx.settings.cache.dir, ctx.loaded, req.layer)
    if atlas is None:
        return Outcome(f"no atlas of {req.layer} in the cache")
    folder = write_cell_directions(
        atlas, cell_directions_folder(ctx.settings.cache.dir, ctx.loaded, atlas.layer,
                                      atlas.grid, atlas.key))
    yield from _cells_join_the_view(str(folder))
    icons = stored_icons(atlas)
    s = ctx.settings
    try:
        examples = yield from cell_examples(ctx.loaded, atlas,
                                            max_pixels=s.source.max_image_pixels,
                                            max_side=s.source.max_frame_side)
    except (OSError, ValueError, KeyError):  # an atlas from before its files were kept
        examples = {}
    return Outcome(f"cached atlas of {req.layer}: {len(atlas.cells)} cells",
                   atlas_message(atlas, str(folder), icons or {}, examples))
