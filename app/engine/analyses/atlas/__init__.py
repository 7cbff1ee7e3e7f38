"""The activation atlas (Carter et al., Distill 2019): a whole layer on one map.

P activation vectors per image of a folder (`collect`), laid out in 2-D by UMAP and binned
into an N × N grid (`grid`); each dense enough cell gets the mean of its vectors as its
direction and the class that direction most supports as its label (`job`). New activation
vectors are placed on it by their nearest kept sample (`grid.locate`); a cell's top samples
are cut from their images (`examples`).
"""

from app.engine.analyses.atlas.collect import AtlasProgress
from app.engine.analyses.atlas.draw import draw_atlas, write_picture
from app.engine.analyses.atlas.examples import cell_examples, sample_positions
from app.engine.analyses.atlas.grid import Grid, bin_layout, locate, umap_layout
from app.engine.analyses.atlas.job import (
    Atlas,
    AtlasError,
    Cell,
    atlas_tag,
    build_atlas,
    cell_directions_folder,
    cell_name,
    label_cells,
    latest_atlas,
    load_atlas,
    locate_images,
    write_cell_directions,
)

__all__ = [
    "Atlas",
    "AtlasError",
    "AtlasProgress",
    "Cell",
    "Grid",
    "atlas_tag",
    "bin_layout",
    "build_atlas",
    "cell_directions_folder",
    "cell_examples",
    "cell_name",
    "draw_atlas",
    "label_cells",
    "latest_atlas",
    "load_atlas",
    "locate",
    "locate_images",
    "sample_positions",
    "umap_layout",
    "write_cell_directions",
    "write_picture",
]
