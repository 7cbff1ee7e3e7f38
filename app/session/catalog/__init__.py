"""The local catalogue of a model (like OpenAI Microscope): a static site, a page per unit.

`build_catalog` is a job (`app.core.jobs`) that `deepvis catalog` drives; the site it
writes into its folder:

    index.html                 the catalogued layers
    LAYER/index.html           the layer's grid of preferred images, one tile per unit
    LAYER/UNIT.html            one unit: preferred images (several seeds), top dataset
                               patches, class selectivity and ablation, concept label,
                               links to the previous/next unit and up to the layer
    LAYER/UNIT/*.png           that page's images
    catalog.json               what was built (for scripts)

LAYER is `app.core.files.safe_filename(layer)`, UNIT the unit's index: the paths are stable,
so a page can be cited and a rebuild replaces it in place. Pages use relative links, PNG files
and inline styles only: they work from `file://` with no network and no server.

- `build`: the job (renders through the render cache, reads what else is cached),
- `cached`: what the cache holds for a layer (scan, ablation curves; the dissection hook),
- `pages`: the HTML, from plain data (stdlib only, every text escaped).
"""

from app.session.catalog.build import (
    CatalogRequest,
    CatalogResult,
    LayerCatalog,
    LayerRequest,
    build_catalog,
)

__all__ = ["CatalogRequest", "CatalogResult", "LayerCatalog", "LayerRequest", "build_catalog"]
