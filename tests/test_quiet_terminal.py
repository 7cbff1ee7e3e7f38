"""The terminal shows results and errors, not OpenCV's or libpng's diagnostics.

Each of these printed on stderr past the log file (issue 22.15): OpenCV's "can't open/read
file" when a cache was probed with `cv2.imread` for a file that is not there, and libpng's
"iCCP: ..." warning on a PNG with a colour profile it dislikes (written straight to stderr,
not through OpenCV's logger). The checks read the process's stderr at the descriptor, where
C++ writes land.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from photos import chelsea

from app.capture.images import read_image

ROOT = Path(__file__).resolve().parents[1]


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_with_bad_profile(rgb: np.ndarray) -> bytes:
    """`rgb` as a PNG whose iCCP chunk holds a profile libpng rejects with a warning."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    png = buf.tobytes()
    profile = bytearray(struct.pack(">I", 3144)) + bytes(3140)
    profile[12:24], profile[36:40] = b"mntrRGB XYZ ", b"acsp"
    ihdr_end = 8 + 12 + 13  # the signature, then IHDR (13 bytes of data)
    iccp = _chunk(b"iCCP", b"bad profile\x00\x00" + zlib.compress(bytes(profile)))
    return png[:ihdr_end] + iccp + png[ihdr_end:]


def test_a_png_with_a_bad_colour_profile_reads_silently_and_unchanged(tmp_path, capfd):
    photo = chelsea()
    path = tmp_path / "profiled.png"
    path.write_bytes(png_with_bad_profile(photo))
    # the file is what the test says: libpng does warn on it when OpenCV reads it as it is
    cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    assert "iCCP" in capfd.readouterr().err
    np.testing.assert_array_equal(read_image(path), photo)
    assert capfd.readouterr().err == ""


PROBES = """
import sys
from pathlib import Path

import cv2
import numpy as np

from app.engine.analyses.featurevis.render_cache import (
    RenderKey, cached_alpha, cached_render, read_png)

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)  # OpenCV's default
root = Path(sys.argv[1])
key = RenderKey("model", "layer", "fast", 8, 32, 0)
misses = [cached_alpha(root, key, 3)]
# the entry's JSON without its image (a render interrupted between the two files)
folder = key.folder(root)
folder.mkdir(parents=True)
(folder / "unit00003.json").write_text('{"format": 1, "unit": 3, "activation": 1.0}')
misses.append(cached_render(root, key, 3))
misses.append(read_png(root / "none.png"))
(root / "empty.png").write_bytes(b"")
misses.append(read_png(root / "empty.png"))
# and a hit decodes as cv2.imread would
image = np.arange(40 * 50 * 3, dtype=np.uint8).reshape(40, 50, 3)
cv2.imwrite(str(root / "hit.png"), image)
hit = read_png(root / "hit.png")
print(all(m is None for m in misses), hit is not None and np.array_equal(hit, image))
"""


def test_cache_probes_that_miss_print_nothing(tmp_path):
    # in a process of its own: OpenCV's log level is process-wide, and stderr is read whole
    proc = _run_quietly(f"-c\0{PROBES}\0{tmp_path}", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]
    assert proc.stderr == ""


def _run_quietly(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    env["DEEPVIS_LOG"] = str(tmp_path / "deepvis.log")
    return subprocess.run([sys.executable, *code.split("\0")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_opencv_speaks_only_of_errors_once_the_log_is_set_up(tmp_path):
    code = ("-c\0from app.core.logs import route_to_log; route_to_log()\n"
            "import cv2; print(cv2.imread('/nonexistent/deepvis.png') is None)\n")
    proc = _run_quietly(code, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr
    assert proc.stderr == ""


@pytest.mark.slow
def test_predict_on_a_profiled_png_prints_only_its_predictions(tmp_path):
    path = tmp_path / "profiled.png"
    path.write_bytes(png_with_bad_profile(chelsea()))
    proc = _run_quietly(f"-m\0app\0predict\0{path}", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cat" in proc.stdout
    assert proc.stderr == ""
