"""Attribution of a unit to the input pixels: gradient, deconvnet, guided backprop."""

from app.engine.analyses.attribution.attributor import (
    AttributionError,
    Attributor,
    saliency_to_uint8,
    signal_to_rgb,
)

__all__ = ["AttributionError", "Attributor", "saliency_to_uint8", "signal_to_rgb"]
