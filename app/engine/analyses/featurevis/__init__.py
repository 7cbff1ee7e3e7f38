"""Feature visualization: preferred images of units by regularized gradient ascent.

Small composable parts (as in lucent, our own code):

- `param`: what is optimized (pixels; 1/f Fourier spectrum with decorrelated color; MACO's
  phase under a fixed natural-image magnitude),
- `spectrum`: that magnitude, measured from images (bundled photos, or a user's folder),
- `transforms`: random pad/jitter/scale/rotate applied before each forward; MACO's crops,
- `regularizers`: Yosinski's step operators (L2 decay, blur, clipping) and penalties (TV),
- `objectives`: channel mean, neuron, direction, class logit, diversity, combined with + - *,
- `presets`: named recipes ("yosinski2015", "lucid", "fast", "maco", "fooling"),
- `render`: the loop (`Ascent`, with the transparency map), as a job with previews
  (`render_units`, N diverse images per unit with `diversity=N`),
- `frames`: the loop on a given frame: feature accentuation and feature inversion (jobs),
- `render_cache`: finished images on disk,
- `contact_sheet`: rendered units in one labelled grid image.
"""

from app.engine.analyses.featurevis.contact_sheet import contact_sheet
from app.engine.analyses.featurevis.frames import (
    AccentuationResult,
    FrameProgress,
    InversionResult,
    LayerInversion,
    accentuate,
    invert,
)
from app.engine.analyses.featurevis.presets import PRESETS, Preset, PresetError, get_preset
from app.engine.analyses.featurevis.render import (
    Renderer,
    RenderProgress,
    RenderResult,
    cached_unit,
    render_units,
)
from app.engine.analyses.featurevis.render_cache import RenderKey, cached_render, store_render
from app.engine.analyses.featurevis.spectrum import (
    Spectrum,
    SpectrumError,
    bundled_spectrum,
    dataset_spectrum,
    load_spectrum,
)

__all__ = [
    "PRESETS",
    "AccentuationResult",
    "FrameProgress",
    "InversionResult",
    "LayerInversion",
    "Preset",
    "PresetError",
    "RenderKey",
    "RenderProgress",
    "RenderResult",
    "Renderer",
    "Spectrum",
    "SpectrumError",
    "accentuate",
    "bundled_spectrum",
    "cached_render",
    "cached_unit",
    "contact_sheet",
    "dataset_spectrum",
    "get_preset",
    "invert",
    "load_spectrum",
    "render_units",
    "store_render",
]
