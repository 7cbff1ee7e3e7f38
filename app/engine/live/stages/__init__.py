"""The live stages, in the order the worker runs them (see `base.py` for their shape).

Deletion comes first: while units are deleted it owns the recorded pass (the forked batch),
so the in-pass building blocks leave it and explain in a second pass. A new live feature is
one more entry here, with its view part (`app/core/view.py`) and its record
(`app/core/results.py`).
"""

from collections.abc import Callable

from app.engine.live.stages.atlas import AtlasStage
from app.engine.live.stages.attention import AttentionStage
from app.engine.live.stages.attribution import AttributionStage
from app.engine.live.stages.base import BaseStage, FramePass, Stage, StageContext
from app.engine.live.stages.blocks import BlocksStage
from app.engine.live.stages.colour import ColourStage
from app.engine.live.stages.deletion import DeletionStage
from app.engine.live.stages.live_top import LiveTopStage

STAGES: tuple[Callable[[StageContext], Stage], ...] = (
    ColourStage, DeletionStage, BlocksStage, AttentionStage, AttributionStage, LiveTopStage,
    AtlasStage,
)

__all__ = [
    "STAGES", "AtlasStage", "AttentionStage", "AttributionStage", "BaseStage", "BlocksStage",
    "ColourStage", "DeletionStage", "FramePass", "LiveTopStage", "Stage", "StageContext",
]
