"""Moved to `app.engine.workflows.patch_attributions`; kept for the catalogue builder
(`app/session/catalog/build.py`), which imports it from here until it is changed."""

from app.engine.workflows.patch_attributions import (
    PATCH_RULE,
    cached_patch_attributions,
    patch_attributions,
    patch_attributions_job,
)

__all__ = ["PATCH_RULE", "cached_patch_attributions", "patch_attributions",
           "patch_attributions_job"]
