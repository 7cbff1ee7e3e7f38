"""A unit report: the unit card as one PNG and as one self-contained HTML page beside it.

The PNG is the card as it is on screen. The page holds the same parts as separate images
(inside it, as `data:` URIs, so the one file can be mailed or attached to a paper's
notes) with their captions and the card's facts as text, in the catalogue's layout
(`app.core.html_pages`): a unit's report reads like its catalogue page. Both files are
written to a temporary name first and renamed.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QBuffer, QIODevice
from PyQt6.QtGui import QImage
from PyQt6.QtWidgets import QWidget

from app.core import html_pages as pages
from app.core.atomic import atomic_write_bytes
from app.gui.qimages import rgb_to_qimage
from app.gui.snapshot import save_widget_png
from app.gui.unit_card import UnitCard

PICTURE_PX = 160  # the side images are shown at on the page
PATCH_PX = 112


def png_bytes(image: QImage) -> bytes:
    """`image` encoded as PNG; raises OSError when Qt cannot encode it."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise OSError("cannot encode a PNG for the unit report")
    return bytes(buffer.data().data())


def data_uri(image: QImage) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def _widget_uri(widget: QWidget) -> str:
    """What a widget shows (a colormapped map, say), as the page's image."""
    return data_uri(widget.grab().toImage())


def _array_uri(image: np.ndarray) -> str:
    return data_uri(rgb_to_qimage(image))


def report_sections(card: UnitCard,
                    frame: tuple[np.ndarray, str] | None = None) -> list[pages.Section]:
    """The card's parts as page sections, in the card's order; `frame`: the picture the
    live map was computed on (as the model saw it) and its name."""
    live = []
    if frame is not None and card.shown_map() is not None:
        live.append(pages.Picture(_array_uri(frame[0]), f"the frame: {frame[1]}"))
    if card.shown_map() is not None:
        live.append(pages.Picture(_widget_uri(card.map_view), card.map_box.heading.text()))
    if card.shown_attribution() is not None:
        live.append(pages.Picture(_widget_uri(card.attribution_view),
                                  card.attribution_box.heading.text()))
    sections = [pages.Section("Facts", rows=(("Unit", card.title.text()),
                                             ("Known", card.facts_text())))]
    on = f" {frame[1]}" if frame is not None and live else ""
    sections.append(pages.Section(
        "Live", tuple(live), PICTURE_PX, note="" if live else "no frame was shown yet",
        subtitle=f"the frame{on} as the model saw it, the unit's map on it, and where in "
        "the input it comes from"))
    preferred = [pages.Picture(_array_uri(image), caption)
                 for image, caption in zip(card.shown_preferred(), card.preferred_captions(),
                                           strict=True) if image is not None]
    sections.append(pages.Section(
        "Preferred images", tuple(preferred), PICTURE_PX,
        note="" if preferred else "none rendered yet",
        subtitle="optimized together, a diversity term pushing them apart (what differs, "
        "the unit ignores); caption: the image and the unit's activation"))
    patches = [pages.Picture(_array_uri(tile.patch.image), tile.caption(),
                             tile.caption_tooltip())
               for tile in card.patch_tiles if tile.patch is not None]
    sections.append(pages.Section(
        "Top dataset patches", tuple(patches), PATCH_PX,
        note="" if patches else card.patches_note.text() or "no scan of this layer cached",
        subtitle="value: the unit's maximum in the image; crop: its receptive field"))
    attributions = [pages.Picture(_array_uri(image), f"patch {i + 1}", tile.toolTip())
                    for i, (image, tile) in enumerate(zip(
                        card.shown_patch_attributions(), card.patch_attribution_tiles,
                        strict=False))]
    if attributions:
        sections.append(pages.Section(
            "Attributions of the top patches", tuple(attributions), PATCH_PX,
            subtitle=f"{card.patches_box.heading.text()}; in the patches' order: grey is "
            "no signal, colour what raises the unit"))
    return sections


def save_unit_report(card: UnitCard, model: str, channels: int, png_path: str | Path,
                     frame: tuple[np.ndarray, str] | None = None) -> tuple[Path, Path]:
    """Write the card as `png_path` and its page as the same name with `.html` (`frame`:
    see `report_sections`)."""
    png = Path(png_path)
    html_path = png.with_suffix(".html")
    page = pages.report_page(
        model, card.layer, card.unit, channels, f"{model} · unit report",
        report_sections(card, frame),
        f"DeepVis Live unit report, {time.strftime('%Y-%m-%d %H:%M')}; the picture of the "
        f"card is {png.name}.")
    save_widget_png(card, png)
    atomic_write_bytes(html_path, page.encode("utf-8"))
    return png, html_path
