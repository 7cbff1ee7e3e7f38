"""Measure the MACO spectrum shipped with the package from the bundled sample photos.

    .venv/bin/python scripts/make_spectrum.py

writes `app/engine/analyses/featurevis/spectrum.npz` (float16, ~200 KB): the mean Fourier
magnitude of `assets/samples/*.jpg` at 256 px, as `deepvis spectrum assets/samples` would
measure it. `tests/test_featurevis_modern.py` recomputes it and compares, so a change to
the photos or to the measurement shows up as a failing test until this is run again.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.capture.images import read_image  # noqa: E402
from app.engine.analyses.featurevis.spectrum import (  # noqa: E402
    BUNDLED_SPECTRUM,
    DEFAULT_SIZE,
    image_spectrum,
    save_spectrum,
)

SAMPLES = ROOT / "assets" / "samples"


def main() -> int:
    photos = sorted(SAMPLES.glob("*.jpg"))
    spectrum = image_spectrum((read_image(p) for p in photos), DEFAULT_SIZE, "bundled")
    # float16 halves the file; its 3 significant digits are far finer than the spread of
    # magnitudes between photos
    save_spectrum(BUNDLED_SPECTRUM, spectrum, np.float16)
    size_kb = BUNDLED_SPECTRUM.stat().st_size / 1024
    print(f"{BUNDLED_SPECTRUM.relative_to(ROOT)}: {spectrum.images} photos, "
          f"{spectrum.size} px, {size_kb:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
