"""`deepvis catalog`: the static site of a model, built on the bundled model and a real scan,
then opened in a real headless Chromium from `file://` (links followed, images loaded).

Chromium comes from Debian (`make test` and `.ci/run` install it as root). Where it is
missing the browser tests fail and say how to get it; DEEPVIS_NO_BROWSER=1 skips them
on purpose (never silently).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import numpy as np
import pytest

from app.cli import main
from app.core import html_pages as pages
from app.core.files import list_images

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "assets" / "samples"
LAYER, UNITS = "_blocks.2", (0, 1, 2)  # scanned and ablated: patches and selectivity shown
BARE_LAYER, BARE_UNITS = "_blocks.1", (0, 1, 2)  # nothing cached: the pages say what is missing
SEEDS = 4
BROWSER_TIMEOUT_S = 60


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A scan and ablation curves of LAYER on the sample photos, then the catalogue of
    LAYER and BARE_LAYER: (site folder, the command's JSON document, its stderr)."""
    tmp = tmp_path_factory.mktemp("catalog")
    photos = tmp / "photos"
    shutil.copytree(SAMPLES, photos)
    settings = tmp / "settings.toml"
    settings.write_text(
        f'[cache]\ndir = "{tmp / "cache"}"\n'
        "[render]\nsteps = 12\nsize = 64\nbatch_size = 4\n"
        "[scan]\nworkers = 0\nbatch_size = 8\n"
        "[ablate]\nseeds = 1\npoints = 5\nbatch_size = 8\n", encoding="utf-8")
    common = ("--settings", str(settings), "--device", "cpu")
    capture = pytest.MonkeyPatch()  # capsys is function-scoped: read the streams ourselves
    from io import StringIO

    out, err = StringIO(), StringIO()
    capture.setattr("sys.stdout", out)
    capture.setattr("sys.stderr", err)
    try:
        assert main(["scan", str(photos), "--layers", LAYER, *common]) == 0, err.getvalue()
        assert main(["ablate", str(photos), "--layer", LAYER, *common]) == 0, err.getvalue()
        out.truncate(0)
        out.seek(0)
        # colour concepts of the photos (no labels needed): the unit pages name them
        # (min IoU 0: every unit whose mask meets a colour at all gets its best label)
        assert main(["dissect", str(photos), "--layers", LAYER, "--workers", "0",
                     "--min-iou", "0", "--json", *common]) == 0, err.getvalue()
        (tmp / "dissect.json").write_text(out.getvalue(), encoding="utf-8")
        out.truncate(0)
        out.seek(0)
        code = main(["catalog", "--layers", LAYER, BARE_LAYER, "--units", "0-2", "--out",
                     str(tmp / "site"), "--seeds", str(SEEDS), "--json", *common])
    finally:
        capture.undo()
    assert code == 0, err.getvalue()
    return tmp / "site", json.loads(out.getvalue()), err.getvalue()


# -- the pages as files ----------------------------------------------------------------------

class _Refs(HTMLParser):
    """Every href and src of a page, and the text of each link."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []  # (tag, reference)
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._href: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("href", "src"):
            if a.get(name):
                self.refs.append((tag, a[name]))
        if tag == "a":
            self._href, self._text = a.get("href"), ""

    def handle_data(self, data):
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append((self._href, self._text.strip()))
            self._href = None


def _refs(page: Path) -> _Refs:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


@pytest.mark.slow
def test_site_layout_stable_paths_and_what_each_page_shows(site):
    folder, doc, err = site
    assert "catalog: 6 unit pages of 2 layers" in err and "catalog: [" in err  # progress
    assert (folder / "index.html").is_file()
    assert json.loads((folder / "catalog.json").read_text()) == doc
    layers = {entry["layer"]: entry for entry in doc["layers"]}
    assert layers[LAYER]["units"] == list(UNITS) and layers[LAYER]["scan"]
    assert layers[LAYER]["ablation"]
    assert layers[BARE_LAYER]["units"] == list(BARE_UNITS)
    assert not layers[BARE_LAYER]["scan"] and not layers[BARE_LAYER]["ablation"]
    assert doc["seeds"] == [0, 1, 2, 3] and doc["rendered"] + doc["from_cache"] == 6 * SEEDS

    page = (folder / LAYER / "1.html").read_text(encoding="utf-8")
    refs = _refs(folder / LAYER / "1.html")
    images = [r for tag, r in refs.refs if tag == "img"]
    assert [f"1/preferred-{s}.png" for s in range(SEEDS)] == images[:SEEDS]
    n_patches = len(list_images(SAMPLES))  # 5 photos, top-9: every photo is a patch
    assert images[SEEDS:SEEDS + n_patches] == [f"1/patch-{r}.png" for r in range(n_patches)]
    # beside them, each patch's attribution ("the deconv of the top 9"), in the same order
    assert images[SEEDS + n_patches:] == [f"1/patch-{r}-attribution.png"
                                          for r in range(n_patches)]
    for name in ("grace_hopper.jpg", "coffee.jpg", "Selectivity index", "Preferred class",
                 "most-selective-first", "<svg"):
        assert name in page, name
    # each unit's concept, as the dissection found it (label and IoU, or none)
    dissected = json.loads((folder.parent / "dissect.json").read_text())
    named = {u["unit"]: u for u in dissected["layers"][LAYER]["units"]}
    for unit in UNITS:
        text = (folder / LAYER / f"{unit}.html").read_text(encoding="utf-8")
        u = named[unit]
        if u["interpretable"]:
            assert f"{u['label']} ({u['category']}), IoU {u['iou']:.3f}" in text
        else:
            assert "found no concept this unit detects" in text
    assert any(named[u]["interpretable"] for u in UNITS)  # a page shows a label
    assert layers[LAYER]["concepts"]
    assert "No dissection of _blocks.1 is cached" in (
        folder / BARE_LAYER / "0.html").read_text(encoding="utf-8")
    links = dict((text, href) for href, text in refs.links)
    assert links["← unit 0"] == "0.html" and links["unit 2 →"] == "2.html"
    assert links["layer"] == "index.html" and links["catalogue"] == "../index.html"
    last = _refs(folder / LAYER / "2.html").links
    assert ("", "→") not in last and not any(text == "unit 3 →" for _, text in last)

    bare = (folder / BARE_LAYER / "0.html").read_text(encoding="utf-8")
    assert f"deepvis scan FOLDER --layers {BARE_LAYER}" in bare
    assert f"deepvis ablate DATASET --layer {BARE_LAYER}" in bare
    assert "patch-0.png" not in bare

    # what the page shows is what the PNGs hold: the first patch is the scan's best crop
    from app.core.scan_results import load_scan

    scan = load_scan(folder.parent / "cache", doc["model_key"], LAYER)
    shown = cv2.cvtColor(cv2.imread(str(folder / LAYER / "1" / "patch-0.png")),
                         cv2.COLOR_BGR2RGB)
    assert np.array_equal(shown, scan.unit_crops(1)[0])
    # and the attributions are the ones cached with the scan, made by the catalogue
    from app.engine.workflows.patch_attributions import cached_patch_attributions

    stored = cached_patch_attributions(scan, 1)
    assert stored is not None and len(stored) == n_patches
    shown = cv2.cvtColor(cv2.imread(str(folder / LAYER / "1" / "patch-0-attribution.png")),
                         cv2.COLOR_BGR2RGB)
    assert np.array_equal(shown, stored[0]) and (stored[0] != 128).any()


@pytest.mark.slow
def test_every_reference_is_relative_and_resolves_to_a_file_in_the_site(site):
    folder, _, _ = site
    htmls = sorted(folder.rglob("*.html"))
    assert len(htmls) == 1 + 2 + 6
    for page in htmls:
        text = page.read_text(encoding="utf-8")
        assert "<script" not in text and "@import" not in text and "url(" not in text
        for _tag, ref in _refs(page).refs:
            assert not urlparse(ref).scheme and not ref.startswith("/"), (page, ref)
            target = (page.parent / unquote(ref)).resolve()
            assert target.is_file(), (page, ref)
            assert folder.resolve() in target.parents, (page, ref)


@pytest.mark.slow
def test_the_job_stops_between_steps_and_a_rebuild_comes_from_the_render_cache(site, tmp_path):
    import threading

    import torch

    from app.core.jobs import Cancelled, run_job
    from app.core.settings import load_settings
    from app.engine.runtime.models import load_model
    from app.session.catalog import CatalogRequest, LayerRequest, build_catalog

    folder, doc, _ = site
    settings = load_settings(folder.parent / "settings.toml")
    loaded = load_model("efficientnet_lite0", torch.device("cpu"), settings.model)
    layer = next(e for e in doc["layers"] if e["layer"] == LAYER)
    request = CatalogRequest((LayerRequest(LAYER, (24, 56, 56), tuple(layer["units"])),),
                             tmp_path / "again", SEEDS)
    cancel, steps = threading.Event(), []

    def count(p):
        steps.append(p)
        if len(steps) == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        run_job(build_catalog(settings, loaded, request), count, cancel)
    assert len(steps) == 3 and not (tmp_path / "again" / "catalog.json").exists()
    again = run_job(build_catalog(settings, loaded, request))
    assert again.rendered == 0 and again.from_cache == len(UNITS) * SEEDS
    for u in UNITS:  # the same images as the first build: the render cache served them
        for s in range(SEEDS):
            name = f"{LAYER}/{u}/preferred-{s}.png"
            assert (tmp_path / "again" / name).read_bytes() == (folder / name).read_bytes()


def test_text_and_paths_are_escaped_in_the_html():
    evil = '<img src=x onerror="alert(1)">&'
    page = pages.unit_page(evil, evil, 3, 8, evil, 2, None, [pages.Section(
        evil, (pages.Picture("3/a b#.png", evil, evil),), rows=((evil, evil),), note=evil,
        subtitle=evil)], evil)
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in page
    assert 'src="3/a%20b%23.png"' in page


@pytest.mark.slow
def test_bad_arguments_exit_2_with_one_line(capsys, tmp_path):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for argv, fragment in (
        (["--layers", "nope", "--out", str(tmp_path / "s")], "no layer 'nope'"),
        (["--layers", LAYER, "--units", "99", "--out", str(tmp_path / "s")], "has 24 units"),
        (["--layers", LAYER, "--out", str(a_file)], "not a folder"),
        (["--layers", LAYER, "--units", "x", "--out", str(tmp_path / "s")], "bad unit"),
        (["--layers", LAYER, "--seeds", "0", "--out", str(tmp_path / "s")], "--seeds"),
    ):
        code, _, err = _run(capsys, "catalog", *argv, "--device", "cpu")
        assert code == 2 and err.count("\n") == 1 and fragment in err, (argv, err)


# -- in a real browser ---------------------------------------------------------------------

PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(i => ({src: i.src, complete: i.complete,
                                                 width: i.naturalWidth}));
  const links = [...document.querySelectorAll("a[href]")].map(a => ({href: a.href,
                                                                     text: a.textContent}));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({title: document.title, images, links});
  document.body.appendChild(out);
});
</script>"""
PROBE_SUFFIX = ".probe.html"


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("DEEPVIS_NO_BROWSER") == "1":
            pytest.skip("DEEPVIS_NO_BROWSER=1: the browser checks of the catalogue are off")
        pytest.fail("Chromium is needed to test the catalogue in a real browser: "
                    "`apt-get install -y chromium` (make test and .ci/run do it as root), "
                    "or set DEEPVIS_NO_BROWSER=1 to skip these checks knowingly")
    return found


def _browser(*args: str, profile: Path) -> str:
    """Run headless Chromium to its end (bounded: the whole process group is killed)."""
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=BROWSER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {BROWSER_TIMEOUT_S} s: {cmd}")
    return out


def _open(page: Path, profile: Path) -> dict:
    """The page as Chromium loaded it from file://: its images and links, by a probe copy
    of the page (same folder, so the same relative links) that reports after `load`."""
    probe = page.with_name(page.name + PROBE_SUFFIX)
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                     encoding="utf-8")
    dom = _browser("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), profile=profile)
    probe.unlink()
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert match, f"the probe script did not report on {page}: {dom[:300]!r}"
    import html as html_lib

    return json.loads(html_lib.unescape(match.group(1)))


def _target(url: str) -> Path:
    parsed = urlparse(url)
    assert parsed.scheme == "file", url
    return Path(unquote(parsed.path))


def _checked(page: Path, profile: Path, images: bool = True) -> dict[str, Path]:
    """Open `page`; assert every image loaded and every link names a file; link text → file."""
    seen = _open(page, profile)
    assert bool(seen["images"]) == images, page
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 0, (page, image["src"])
    links = {}
    for link in seen["links"]:
        target = _target(link["href"])
        assert target.is_file(), (page, link)
        links[link["text"].strip()] = target
    return links


@pytest.mark.slow
def test_chromium_follows_the_links_and_every_image_loads(site, tmp_path):
    folder, _, _ = site
    profile = tmp_path / "profile"
    index = folder / "index.html"
    links = _checked(index, profile, images=False)
    layer_index = links[LAYER]
    assert layer_index == folder / LAYER / "index.html"
    links = _checked(layer_index, profile)  # the grid: a tile per unit, each a link
    tiles = {text: path for text, path in links.items() if text.isdigit()}
    assert tiles == {str(u): folder / LAYER / f"{u}.html" for u in UNITS}
    assert links[f"{BARE_LAYER} →"] == folder / BARE_LAYER / "index.html"
    unit = tiles["0"]
    links = _checked(unit, profile)
    assert links["unit 1 →"] == folder / LAYER / "1.html"
    links = _checked(links["unit 1 →"], profile)
    assert links["← unit 0"] == unit
    assert links["layer"] == layer_index
    assert _checked(links["layer"], profile).keys() >= tiles.keys()
    links = _checked(folder / BARE_LAYER / "1.html", profile)
    assert links["← unit 0"] == folder / BARE_LAYER / "0.html"


@pytest.mark.slow
def test_chromium_screenshots_of_a_unit_page_and_a_layer_index(site, tmp_path):
    folder, _, _ = site
    for page, size in ((folder / LAYER / "1.html", (1280, 1300)),
                       (folder / LAYER / "index.html", (1280, 720))):
        shot = tmp_path / f"{page.parent.name}-{page.stem}.png"
        _browser(f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}",
                 page.as_uri(), profile=tmp_path / "profile")
        image = cv2.imread(str(shot))
        assert image is not None and image.shape[:2] == (size[1], size[0]), shot
        # not a blank or error page: the dark theme's background plus real picture content
        assert image.std() > 10 and len(np.unique(image.reshape(-1, 3), axis=0)) > 500, shot


@pytest.mark.slow
def test_the_progress_counts_renders_and_pages_against_their_totals(site, tmp_path):
    import torch

    from app.core.jobs import run_job
    from app.core.settings import load_settings
    from app.engine.runtime.models import load_model
    from app.session.catalog import CatalogRequest, LayerRequest, build_catalog

    folder, doc, _ = site
    settings = load_settings(folder.parent / "settings.toml")
    loaded = load_model("efficientnet_lite0", torch.device("cpu"), settings.model)
    layer = next(e for e in doc["layers"] if e["layer"] == LAYER)
    request = CatalogRequest((LayerRequest(LAYER, (24, 56, 56), tuple(layer["units"])),),
                             tmp_path / "again", 2)
    lines: list[str] = []
    run_job(build_catalog(settings, loaded, request), lambda p: lines.append(p.line()))
    # 2 renders (one layer, 2 seeds; the site's build cached them) of 3 units each, then 3
    # unit pages and the layer's index
    renders = [line for line in lines if line.startswith("render ")]
    assert renders == [f"render 1/2: {LAYER} seed 0, units 3/3 · step 12/12",
                       f"render 2/2: {LAYER} seed 1, units 3/3 · step 12/12"]
    pages = [line for line in lines if line.startswith("page ")]
    assert pages == [f"page 1/4: {LAYER} unit 0", f"page 2/4: {LAYER} unit 1",
                     f"page 3/4: {LAYER} unit 2", f"page 4/4: {LAYER} index"]


@pytest.mark.slow
def test_curves_of_an_unlabelled_folder_are_called_agreement_not_accuracy(site):
    # the sample photos have no class folders: the curves measure how often the network
    # still gives its intact top-1, which a page that says "accuracy" misreports
    folder, _, _ = site
    for page in (folder / LAYER / "1.html", folder / LAYER / "index.html"):
        text = page.read_text(encoding="utf-8")
        assert "agreement with the intact" in text, page
        assert "accuracy" not in text.lower(), page
