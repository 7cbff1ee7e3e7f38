"""Jobs on the frozen frame: feature accentuation, inversion, the activation grid and the
path-integrated attribution. The pictures come back as `FrameImage` previews while the
optimization runs, then the final one(s)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from app.core.jobs import Job, Outcome, Progress
from app.core.messages import FrameImage, IntegratedExplanation
from app.core.requests import (
    AccentuateRequest,
    ActivationGridRequest,
    IntegratedRequest,
    InvertRequest,
)
from app.engine.analyses.blocks import ClassScore, LayerAttributor
from app.engine.analyses.blocks import integrated_job as blocks_integrated_job
from app.engine.analyses.featurevis import FrameProgress, accentuate, invert
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch
from app.engine.workflows.activation_grid import GridPicture, activation_grid
from app.session.jobs.runner import JobContext, SessionJob, job_for

P = TypeVar("P", bound=Progress)
R = TypeVar("R")


def _steps(job: Job[P, R], preview: Callable[[P], object | None]) -> Job[Progress, R]:
    """`job`'s steps with `preview(step)` on them; its result. Closed, it closes `job`, so
    the engine's finally blocks run on a cancel too."""
    try:
        while True:
            try:
                p = next(job)
            except StopIteration as stop:
                return stop.value
            yield Progress(p.done, p.total, p.line(), preview=preview(p))
    finally:
        job.close()


@job_for(AccentuateRequest)
def accentuate_job(ctx: JobContext, req: AccentuateRequest) -> SessionJob:
    """Feature accentuation of the unit in the frame, with previews (`FrameImage`)."""
    layer, unit = req.layer, req.unit

    def preview(p: FrameProgress) -> FrameImage | None:
        if p.image is None:
            return None
        value = "" if p.value is None else f"activation {p.value:.2f} · "
        return FrameImage("accentuate", layer, unit, p.image,
                          f"{value}step {p.done}/{p.total}", False)

    r = yield from _steps(accentuate(ctx.loaded, req.image, layer, unit,
                                     seed=ctx.settings.render.seed), preview)
    caption = (f"activation {r.activation_before:.2f} → {r.activation_after:.2f}, "
               f"{r.psnr:.1f} dB from the frame")
    return Outcome(f"{layer} unit {unit} accentuated: {caption}",
                   FrameImage("accentuate", layer, unit, r.image, caption, True, r.seed))


@job_for(InvertRequest)
def invert_job(ctx: JobContext, req: InvertRequest) -> SessionJob:
    """The frame reconstructed from each layer's code, with previews (`FrameImage`); each
    layer's final picture is a preview of the last step, as there are several."""

    def preview(p: FrameProgress) -> FrameImage | None:
        if p.image is None:
            return None
        err = "" if p.value is None else f"code error {p.value:.2f} · "
        return FrameImage("invert", p.layer, -1, p.image, f"{err}step {p.done}/{p.total}",
                          False)

    r = yield from _steps(invert(ctx.loaded, req.image, list(req.layers),
                                 seed=ctx.settings.render.seed), preview)
    for inv in r.layers:
        yield Progress(1, 1, f"inverted {inv.layer}", preview=FrameImage(
            "invert", inv.layer, -1, inv.image,
            f"code error {inv.code_error:.2f} (from {inv.start_error:.2f})", True, r.seed))
    return Outcome("inverted " + ", ".join(f"{i.layer} ({i.code_error:.2f})" for i in r.layers))


@job_for(ActivationGridRequest)
def activation_grid_job(ctx: JobContext, req: ActivationGridRequest) -> SessionJob:
    """The activation grid of the layer for the frame, previews as it goes."""
    layer = req.layer

    def picture(g: GridPicture, caption: str, done: bool) -> FrameImage:
        return FrameImage("activation_grid", layer, -1, g.image, caption, done)

    def preview(p: Progress) -> FrameImage | None:
        g = p.preview
        return picture(g, f"step {g.step}/{g.steps}", False) if isinstance(g, GridPicture) \
            else None

    r = ctx.settings.render
    final = yield from _steps(activation_grid(ctx.loaded, req.image, layer, r.preset, r.seed),
                              preview)
    caption = f"{final.rows}×{final.cols} positions of {layer}, darker where it is weak"
    return Outcome(f"activation grid of {layer}: {final.rows}×{final.cols} positions",
                   picture(final, caption, True))


@job_for(IntegratedRequest)
def integrated_job(ctx: JobContext, req: IntegratedRequest) -> SessionJob:
    """Path-integrated attribution of a frozen frame ([blocks].integrated_steps steps)."""
    loaded, steps = ctx.loaded, ctx.settings.blocks.integrated_steps
    x = prepare_batch([frame_to_tensor(req.image, loaded.device)], loaded.preprocess)
    attributor = LayerAttributor(loaded)  # a private copy: the live model is not touched
    result = yield from blocks_integrated_job(attributor, x, req.layer,
                                              ClassScore(req.target, req.versus), steps=steps)
    message = IntegratedExplanation(req.layer, req.target, req.versus, steps, result.channels,
                                    result.spatial, result.score, result.baseline)
    return Outcome(f"path-integrated attribution of {req.layer} ({steps} steps): adds up to "
                   f"score − baseline within {100 * message.gap:.1f} %", message)

