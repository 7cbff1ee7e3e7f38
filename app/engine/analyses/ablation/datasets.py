"""Labeled image folders: class sub-folders name the label, by class name or index."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from app.core.class_names import ClassNameError, class_of_folder
from app.core.files import list_images
from app.engine.analyses.ablation.deletion import AblationError
from app.engine.runtime.models import LoadedModel
from app.engine.runtime.preprocess import frame_to_tensor, prepare_batch

# -- datasets: image folders, labeled by class folders -------------------------------------

@dataclass(frozen=True)
class Dataset:
    paths: tuple[Path, ...]
    labels: tuple[int, ...] | None  # model class indices, None: unlabeled
    folders: dict[str, int] = field(default_factory=dict)  # class folder → class index


def match_class(folder: str, class_names: Sequence[str]) -> int | None:
    """Class index named by a folder (`core.class_names.class_of_folder`); AblationError if
    the name fits several classes, None if it fits none."""
    try:
        return class_of_folder(folder, class_names)
    except ClassNameError as exc:
        raise AblationError(str(exc)) from None


def find_dataset(root: str | Path, class_names: Sequence[str]) -> Dataset:
    """Images under `root`; labeled when every sub-folder holding images names a class."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise AblationError(f"dataset folder not found: {base}")
    base = Path(os.path.abspath(base))
    paths = [Path(p) for p in list_images(base)]
    if not paths:
        raise AblationError(f"no images in {base}")
    rel = [p.relative_to(base).parts for p in paths]
    tops = sorted({parts[0] for parts in rel if len(parts) > 1})
    matched = {t: match_class(t, class_names) for t in tops}
    hits = {t: i for t, i in matched.items() if i is not None}
    if not hits:
        return Dataset(tuple(paths), None)
    missing = [t for t, i in matched.items() if i is None]
    if missing:
        raise AblationError(f"class folder {missing[0]!r} matches no class of the model "
                            f"({len(hits)} others do): rename it to a class name or index")
    labeled = [p for p in paths if len(p.relative_to(base).parts) > 1]
    labels = tuple(hits[p.relative_to(base).parts[0]] for p in labeled)
    return Dataset(tuple(labeled), labels, hits)


class ImageBatches:
    """Batches of preprocessed images (decoded by two threads) with their labels; call it
    for a fresh pass.

    Unreadable files are skipped, never fatal; their paths collect in `skipped` (each file
    once, however often the batches are replayed).
    """

    def __init__(self, loaded: LoadedModel, dataset: Dataset, batch_size: int,
                 max_pixels: int = 80_000_000) -> None:
        self.loaded, self.dataset = loaded, dataset
        self.batch_size, self.max_pixels = batch_size, max_pixels
        self.skipped: dict[str, str] = {}
        self.yielded: list[int] = []  # dataset positions of the last call's images, in order

    def _load(self, path: Path) -> torch.Tensor | None:
        from app.capture.images import ImageError, read_image

        try:
            return frame_to_tensor(read_image(path, self.max_pixels), self.loaded.device)
        except ImageError as exc:
            self.skipped[str(path)] = str(exc)
            return None

    def __call__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        paths, labels, step = self.dataset.paths, self.dataset.labels, self.batch_size
        self.yielded = []
        with ThreadPoolExecutor(2) as pool:
            for start in range(0, len(paths), step):
                images = list(pool.map(self._load, paths[start : start + step]))
                keep = [i for i, img in enumerate(images) if img is not None]
                if not keep:
                    continue
                x = prepare_batch([img for img in images if img is not None],
                                  self.loaded.preprocess)
                y = None
                if labels is not None:
                    chunk = labels[start : start + step]
                    y = torch.tensor([chunk[i] for i in keep])
                self.yielded += [start + i for i in keep]
                yield x, y


