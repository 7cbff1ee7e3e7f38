"""Concept datasets for dissection, detected from the folder: Broden, simple masks, colours.

Broden (read as NetDissect reads it, `loader/data_loader.py`):
    ``index.csv``     image,split,ih,iw,sh,sw, then one column per category; each cell a
                      `;`-separated list of mask PNG names (under ``images/``) or integers
                      (image-level labels covering the whole image)
    ``category.csv``  name,... — the categories, in this order
    ``label.csv``     number,name,category (``object(12);part(3)``),frequency,coverage,syns
    ``c_<cat>.csv``   code,number,name,frequency,coverage — a label's coverage in each
                      category picks its *primary* category, the one it is scored in (the
                      largest coverage; a tie goes to the later category, as in NetDissect).
                      Missing: the counts of label.csv's category field are used instead.
    A mask pixel's label is R + 256·G; 0 is unlabelled. Images with no data in the chosen
    categories are left out, as NetDissect does. A label in none of the chosen categories
    is not scored (NetDissect would file it under the last category).
Simple:
    ``labels.csv`` number,name,category; images anywhere outside ``masks/``; the mask of
    ``a/b.jpg`` is ``masks/a/b.png`` (label R + 256·G, 0 = none). An image annotates the
    categories of the labels in its mask; images without a mask are left out.
No labels:
    the eleven basic colour terms of every pixel (`colours`), category ``color``; and when
    the images sit in two or more class sub-folders, category ``class`` with one image-level
    label per folder.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.core.files import list_images
from app.engine.analyses.dissection.colours import COLOUR_NAMES, colour_index

COLOUR = "@colour"  # the source of a pixel-level colour plane computed from the image
MAX_MASK_SIDE = 224  # simple-format masks are read at most this big (nearest neighbour)
BRODEN_META = ("image", "split", "ih", "iw", "sh", "sw")


class DissectionError(ValueError):
    """A dataset or setting dissection cannot use; the message is one line for the user."""


@dataclass(frozen=True)
class Item:
    """One image and where its labels come from: per category index, PNG paths (masks),
    integers (image-level labels) or `COLOUR`. `sh, sw` = 0: the mask's own size."""

    image: str
    sh: int
    sw: int
    sources: tuple[tuple[int, tuple[str | int, ...]], ...]


@dataclass(frozen=True)
class Concepts:
    """A concept dataset: its images with label sources, label names and categories."""

    kind: str  # "broden" | "simple" | "colour"
    root: str
    items: tuple[Item, ...]
    names: tuple[str, ...]  # label number → name ("" where label.csv has no row)
    primary: tuple[int, ...]  # label number → primary category index, -1: not scored
    categories: tuple[str, ...]
    files: tuple[str, ...]  # every file read (images, masks, csv): the cache fingerprint

    @property
    def labels(self) -> int:
        return len(self.names)


def find_concepts(root: str | Path, categories: tuple[str, ...] | None = None,
                  label_side: int = 112) -> Concepts:
    """The dataset in `root`, by its files; `categories` limits it (None: all).

    `label_side`: the side of the colour masks of an unlabelled folder (the network's input
    halved, as Broden's 112-px masks of 224-px images).
    """
    base = Path(os.path.abspath(Path(root).expanduser()))
    if not base.is_dir():
        raise DissectionError(f"dataset folder not found: {base}")
    if (base / "index.csv").is_file():
        found = _broden(base, categories)
    elif (base / "labels.csv").is_file():
        found = _simple(base, categories)
    else:
        found = _colours(base, categories, label_side)
    if not found.items:
        raise DissectionError(f"{base}: no image with labels in the categories "
                              f"{', '.join(found.categories) or '(none)'}")
    return found


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            fields = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DissectionError(f"cannot read {path}: {exc}") from None
    missing = [c for c in required if c not in fields]
    if missing:
        raise DissectionError(f"{path}: no column {missing[0]!r} (has {', '.join(fields)})")
    return rows


def _int(value: str | None, where: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise DissectionError(f"{where}: {value!r} is not an integer") from None


def _category_counts(field: str, where: str) -> dict[str, float]:
    """`object(12);part(3)` → {"object": 12, "part": 3}; a bare `object` counts 1."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (field or "").split(";"))):
        m = re.fullmatch(r"([^()]+?)\s*(?:\(([^)]*)\))?", part)
        if m is None:
            raise DissectionError(f"{where}: bad category {part!r} (use object(12);part(3))")
        out[m.group(1)] = float(m.group(2)) if m.group(2) else 1.0
    return out


def _label_table(path: Path) -> tuple[list[str], list[dict[str, float]]]:
    """label.csv → (names by number, category counts by number)."""
    rows = _read_csv(path, ("number", "name", "category"))
    numbers = [_int(r["number"], f"{path} row {i + 2} number") for i, r in enumerate(rows)]
    if any(n < 0 for n in numbers) or not numbers:
        raise DissectionError(f"{path}: label numbers must be ≥ 0 and there must be some")
    size = max(numbers) + 1
    names = [""] * size
    cats: list[dict[str, float]] = [{} for _ in range(size)]
    for i, (n, r) in enumerate(zip(numbers, rows, strict=True)):
        names[n] = r["name"]
        cats[n] = _category_counts(r["category"], f"{path} row {i + 2}")
    return names, cats


def _primary(coverage: list[dict[str, float]], categories: tuple[str, ...]) -> tuple[int, ...]:
    out = []
    for n, cov in enumerate(coverage):
        ranked = [(cov[c], i) for i, c in enumerate(categories) if c in cov]
        out.append(max(ranked)[1] if ranked and n != 0 else -1)
    return tuple(out)


def _pick(available: list[str], wanted: tuple[str, ...] | None, where: Path) -> tuple[str, ...]:
    if wanted is None:
        return tuple(available)
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise DissectionError(f"{where}: no category {unknown[0]!r} "
                              f"(has {', '.join(available) or 'none'})")
    return tuple(c for c in available if c in wanted)  # the dataset's order, as NetDissect


def _broden(base: Path, wanted: tuple[str, ...] | None) -> Concepts:
    index = _read_csv(base / "index.csv", BRODEN_META)
    cat_rows = _read_csv(base / "category.csv", ("name",))
    available = [r["name"] for r in cat_rows]
    categories = _pick(available, wanted, base / "category.csv")
    columns = set(index[0]) if index else set()
    absent = [c for c in categories if c not in columns]
    if absent:
        raise DissectionError(f"{base / 'index.csv'}: no column for category {absent[0]!r}")
    names, counts = _label_table(base / "label.csv")
    coverage: list[dict[str, float]] = [{} for _ in names]
    for cat in categories:
        cpath = base / f"c_{cat}.csv"
        if not cpath.is_file():  # fall back on label.csv's per-category counts
            for n, c in enumerate(counts):
                if cat in c:
                    coverage[n][cat] = c[cat]
            continue
        for i, r in enumerate(_read_csv(cpath, ("number", "coverage"))):
            n = _int(r["number"], f"{cpath} row {i + 2} number")
            if not 0 <= n < len(names):
                raise DissectionError(f"{cpath} row {i + 2}: label {n} is not in label.csv")
            try:
                coverage[n][cat] = float(r["coverage"] or 0)
            except ValueError:
                raise DissectionError(f"{cpath} row {i + 2}: bad coverage "
                                      f"{r['coverage']!r}") from None
    items, files = [], [str(base / n) for n in ("index.csv", "category.csv", "label.csv")]
    for i, row in enumerate(index):
        where = f"{base / 'index.csv'} row {i + 2}"
        sources = []
        for ci, cat in enumerate(categories):
            entries: list[str | int] = []
            for v in filter(None, (s.strip() for s in (row.get(cat) or "").split(";"))):
                if v.isdigit():
                    if int(v) >= len(names):
                        raise DissectionError(f"{where}: label {v} is not in label.csv")
                    entries.append(int(v))
                else:
                    mask = base / "images" / v
                    if not mask.is_file():
                        raise DissectionError(f"{where}: mask {mask} not found")
                    entries.append(mask.as_posix())
                    files.append(mask.as_posix())
            if entries:
                sources.append((ci, tuple(entries)))
        if not sources:
            continue  # no data in the chosen categories: left out, as NetDissect does
        image = base / "images" / (row["image"] or "")
        if not row["image"] or not image.is_file():
            raise DissectionError(f"{where}: image {image} not found")
        sh, sw = _int(row["sh"], f"{where} sh"), _int(row["sw"], f"{where} sw")
        if sh <= 0 or sw <= 0:
            raise DissectionError(f"{where}: sh and sw must be positive")
        items.append(Item(image.as_posix(), sh, sw, tuple(sources)))
        files.append(image.as_posix())
    files += [str(base / f"c_{c}.csv") for c in categories if (base / f"c_{c}.csv").is_file()]
    return Concepts("broden", base.as_posix(), tuple(items), tuple(names),
                    _primary(coverage, categories), categories, tuple(files))


def _simple(base: Path, wanted: tuple[str, ...] | None) -> Concepts:
    names, counts = _label_table(base / "labels.csv")
    available = list(dict.fromkeys(c for cnt in counts for c in cnt))
    categories = _pick(available, wanted, base / "labels.csv")
    masks = base / "masks"
    items, files = [], [str(base / "labels.csv")]
    for path in list_images(base):
        rel = Path(path).relative_to(base)
        if rel.parts[0] == "masks":
            continue
        mask = (masks / rel).with_suffix(".png")
        if not mask.is_file():
            continue
        # the categories a mask annotates are known once it is read (`label_planes`)
        items.append(Item(path, 0, 0, ((0, (mask.as_posix(),)),)))
        files += [path, mask.as_posix()]
    if not items:
        raise DissectionError(f"{base}: labels.csv but no image with a mask in "
                              f"{masks}/ (the mask of a/b.jpg is masks/a/b.png)")
    return Concepts("simple", base.as_posix(), tuple(items), tuple(names),
                    _primary([{c: v for c, v in cnt.items() if c in categories}
                              for cnt in counts], categories), categories, tuple(files))


def _colours(base: Path, wanted: tuple[str, ...] | None, side: int) -> Concepts:
    paths = list_images(base)
    if not paths:
        raise DissectionError(f"no images in {base} (and no index.csv or labels.csv)")
    tops = [Path(p).relative_to(base).parts for p in paths]
    folders = sorted({t[0] for t in tops if len(t) > 1})
    available = ["color"] + (["class"] if len(folders) >= 2 else [])
    categories = _pick(available, wanted, base)
    names = ["-", *COLOUR_NAMES]
    if "class" in available:
        names += folders
    ci_colour = categories.index("color") if "color" in categories else -1
    ci_class = categories.index("class") if "class" in categories else -1
    items = []
    for path, parts in zip(paths, tops, strict=True):
        sources: list[tuple[int, tuple[str | int, ...]]] = []
        if ci_colour >= 0:
            sources.append((ci_colour, (COLOUR,)))
        if ci_class >= 0 and len(parts) > 1:
            sources.append((ci_class, (1 + len(COLOUR_NAMES) + folders.index(parts[0]),)))
        if sources:
            items.append(Item(path, side, side, tuple(sources)))
    primary = [-1] + [ci_colour] * len(COLOUR_NAMES) + [ci_class] * (len(names) - 12)
    return Concepts("colour", base.as_posix(), tuple(items), tuple(names), tuple(primary),
                    categories, tuple(paths))


# -- reading one image's labels (in the loader's worker processes) ---------------------------


def read_mask(path: str) -> np.ndarray:
    """A label PNG → (H, W) int32 labels, R + 256·G (cv2 reads BGR)."""
    png = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if png is None:
        raise DissectionError(f"cannot read mask {path}")
    if png.ndim == 2:
        return png.astype(np.int32)
    return png[:, :, 2].astype(np.int32) + 256 * png[:, :, 1].astype(np.int32)


def _fit(mask: np.ndarray, sh: int, sw: int) -> np.ndarray:
    if mask.shape == (sh, sw):
        return mask
    return cv2.resize(mask, (sw, sh), interpolation=cv2.INTER_NEAREST)


def label_planes(item: Item, concepts: Concepts, thumb_of: object
                 ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(planes (D, sh, sw) int32 label numbers, annotated (K,) bool, (sh, sw)) of `item`.

    `thumb_of(sh, sw)` gives the image as (sh, sw, 3) uint8 RGB (for colour planes).
    """
    sh, sw = item.sh, item.sw
    loaded: list[tuple[int, np.ndarray | int]] = []
    for ci, entries in item.sources:
        for e in entries:
            if isinstance(e, int):
                loaded.append((ci, e))
            elif e == COLOUR:
                rgb = thumb_of(sh, sw)  # type: ignore[operator]  # a callable, kept loose
                loaded.append((ci, 1 + colour_index(rgb).astype(np.int32)))
            else:
                m = read_mask(e)
                if sh == 0:  # simple format: the mask's own size, capped
                    h, w = m.shape
                    scale = min(1.0, MAX_MASK_SIDE / max(h, w))
                    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
                loaded.append((ci, m))
    if sh == 0:
        raise DissectionError(f"{item.image}: no mask to take the label size from")
    planes, annotated = [], np.zeros(len(concepts.categories), bool)
    if concepts.kind == "simple":  # one mask, read once, annotating what it contains
        m = next(v for _, v in loaded if isinstance(v, np.ndarray))
        m = _fit(m, sh, sw)
        if m.max(initial=0) >= concepts.labels:
            raise DissectionError(f"{item.image}: mask label {int(m.max())} is not in labels.csv")
        for n in np.unique(m):
            if n and concepts.primary[n] >= 0:
                annotated[concepts.primary[n]] = True
        return m[None], annotated, (sh, sw)
    for ci, v in loaded:
        annotated[ci] = True
        plane = np.full((sh, sw), v, np.int32) if isinstance(v, int) else _fit(v, sh, sw)
        if plane.max(initial=0) >= concepts.labels:
            raise DissectionError(f"{item.image}: mask label {int(plane.max())} is not in "
                                  "label.csv")
        planes.append(plane)
    return np.stack(planes), annotated, (sh, sw)
