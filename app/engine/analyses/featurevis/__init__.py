"""Feature visualization: preferred images of units by regularized gradient ascent.

Small composable parts (as in lucent, our own code):

- `param`: what is optimized (pixels; 1/f Fourier spectrum with decorrelated color),
- `transforms`: random pad/jitter/scale/rotate applied before each forward,
- `regularizers`: Yosinski's step operators (L2 decay, blur, clipping) and penalties (TV),
- `objectives`: channel mean, neuron, direction, class logit, diversity, combined with + - *,
- `presets`: named recipes ("yosinski2015", "lucid", "fast"),
- `render`: the loop, as a job with previews (`render_units`),
- `render_cache`: finished images on disk,
- `contact_sheet`: rendered units in one labelled grid image.
"""

from app.engine.analyses.featurevis.contact_sheet import contact_sheet
from app.engine.analyses.featurevis.presets import PRESETS, Preset, PresetError, get_preset
from app.engine.analyses.featurevis.render import (
    Renderer,
    RenderProgress,
    RenderResult,
    cached_unit,
    render_units,
)
from app.engine.analyses.featurevis.render_cache import RenderKey, cached_render, store_render

__all__ = [
    "PRESETS",
    "Preset",
    "PresetError",
    "RenderKey",
    "RenderProgress",
    "RenderResult",
    "Renderer",
    "cached_render",
    "cached_unit",
    "contact_sheet",
    "get_preset",
    "render_units",
    "store_render",
]
