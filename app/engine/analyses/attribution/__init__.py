"""Attribution of a unit to the input pixels: gradient, deconvnet, guided backprop."""

from app.engine.analyses.attribution.attributor import Attributor, saliency_to_uint8

__all__ = ["Attributor", "saliency_to_uint8"]
