"""The HTML of the catalogue and the unit report: plain data in, one self-contained page out.

Every page carries its own small style sheet and links only relative paths (or, in a unit
report, holds its images as `data:` URIs), so it opens from `file://` with no network and
no server and survives being copied or zipped.
Every text that reaches the HTML goes through `_e` (html.escape), every path through
`_href` (URL-quoted, then escaped): a layer or file name can hold any character.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

STYLE = """
:root { color-scheme: dark; }
body { margin: 0; background: #16181d; color: #d8dce3; line-height: 1.4;
       font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 12px 20px 32px; }
a { color: #8fc1ff; text-decoration: none; } a:hover { text-decoration: underline; }
nav { display: flex; flex-wrap: wrap; gap: 6px 14px; align-items: center;
      padding: 8px 0 10px; border-bottom: 1px solid #2c3038; }
nav .crumbs { flex: 1 1 auto; } nav .step { white-space: nowrap; }
nav .off { color: #5b616c; }
h1 { font-size: 22px; margin: 14px 0 2px; font-weight: 600; }
h2 { font-size: 15px; margin: 22px 0 8px; font-weight: 600; color: #aeb6c2;
     text-transform: uppercase; letter-spacing: .04em; }
.sub { color: #8a929e; margin: 0 0 6px; }
section > .sub { margin: -4px 0 8px; }
.pics { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; background: #1f2229; border: 1px solid #2c3038; border-radius: 4px;
         padding: 4px; }
figure img { display: block; image-rendering: auto; background: #000; }
figcaption { font-size: 12px; color: #aeb6c2; padding-top: 3px; }
figcaption span { display: block; overflow: hidden; text-overflow: ellipsis;
                  white-space: nowrap; }
.grid { display: grid; gap: 6px; grid-template-columns: repeat(auto-fill, minmax(96px, 1fr)); }
.grid a { display: block; background: #1f2229; border: 1px solid #2c3038; border-radius: 3px;
          padding: 3px; text-align: center; font-size: 12px; color: #aeb6c2; }
.grid a:hover { border-color: #8fc1ff; }
.grid img { display: block; width: 100%; height: auto; aspect-ratio: 1; }
table { border-collapse: collapse; } td, th { padding: 3px 14px 3px 0; text-align: left;
        vertical-align: top; } th { color: #8a929e; font-weight: 500; }
.note { color: #c9b27a; background: #262319; border-left: 3px solid #8c7539;
        padding: 6px 10px; margin: 6px 0; }
code { background: #262a32; padding: 1px 4px; border-radius: 3px; font-size: 13px; }
footer { margin-top: 28px; color: #6b7280; font-size: 12px; border-top: 1px solid #2c3038;
         padding-top: 8px; }
svg { background: #1f2229; border: 1px solid #2c3038; border-radius: 4px; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _href(path: str) -> str:
    """A relative path as an attribute value: each character URL-safe, then HTML-safe.

    A `data:` URI (an image inside a unit report) is already URL-safe as it is."""
    if path.startswith("data:image/png;base64,"):
        return _e(path)
    return _e(quote(path, safe="/.-_~@"))


@dataclass(frozen=True)
class Picture:
    """An image on a page: `src` relative to the page; `href` makes it a link."""

    src: str
    caption: str  # one line per "\n"
    tooltip: str = ""
    href: str = ""


@dataclass(frozen=True)
class Curves:
    """Ablation curves to draw: accuracy at each deleted fraction, per order name."""

    fractions: tuple[float, ...]
    series: Mapping[str, Sequence[float]]
    marker: float | None = None  # a fraction to mark (where one unit is deleted)
    ylabel: str = "accuracy"


@dataclass(frozen=True)
class Section:
    """One titled part of a page: pictures, a small table, a drawing, and/or a note that
    says what is missing and how to get it."""

    title: str
    pictures: tuple[Picture, ...] = ()
    picture_px: int = 128
    rows: tuple[tuple[str, str], ...] = ()
    curves: Curves | None = None
    note: str = ""
    subtitle: str = ""


@dataclass(frozen=True)
class Link:
    text: str
    href: str = ""  # "" renders the text greyed out (no such neighbour)


def _page(title: str, crumbs: Sequence[Link], steps: Sequence[Link], heading: str,
          subtitle: str, body: str, footer: str) -> str:
    def link(item: Link) -> str:
        if not item.href:
            return f'<span class="off">{_e(item.text)}</span>'
        return f'<a href="{_href(item.href)}">{_e(item.text)}</a>'

    trail = " › ".join(link(c) for c in crumbs)
    moves = "".join(f'<span class="step">{link(s)}</span>' for s in steps)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f'<nav><span class="crumbs">{trail}</span>{moves}</nav>\n'
        f"<h1>{_e(heading)}</h1>\n<p class=\"sub\">{_e(subtitle)}</p>\n{body}"
        f"<footer>{_e(footer)}</footer>\n</main>\n</body>\n</html>\n")


def _picture(p: Picture, px: int) -> str:
    one_line = p.caption.replace("\n", " · ")
    img = (f'<img src="{_href(p.src)}" width="{px}" height="{px}" alt="{_e(one_line)}"'
           f' title="{_e(p.tooltip or one_line)}">')
    if p.href:
        img = f'<a href="{_href(p.href)}">{img}</a>'
    lines = "".join(f"<span>{_e(line)}</span>" for line in p.caption.split("\n"))
    return f'<figure style="width:{px}px">{img}<figcaption>{lines}</figcaption></figure>'


COLORS = ("#8fc1ff", "#ff9f6b", "#7fd88f", "#d7a3ff")
DASHES = ("", "7,4", "2,3", "10,3,2,3")  # curves that coincide stay told apart


def curves_svg(c: Curves, width: int = 640, height: int = 200) -> str:
    """The curves as an inline SVG line chart (no script, no external file)."""
    left, right, top, bottom = 44, 300, 10, 28
    w, h = width - left - right, height - top - bottom

    def xy(f: float, v: float) -> str:  # accuracy in [0, 1] on the y axis
        return f"{left + f * w:.1f},{top + h - min(max(v, 0.0), 1.0) * h:.1f}"

    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'role="img" aria-label="{_e(c.ylabel)} vs fraction of units deleted">']
    for t in (0.0, 0.5, 1.0):
        y = top + h - t * h
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" '
                     'stroke="#2c3038"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" fill="#8a929e" font-size="11" '
                     f'text-anchor="end">{t:.0%}</text>')
    for t in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{left + t * w:.1f}" y="{height - 8}" fill="#8a929e" '
                     f'font-size="11" text-anchor="middle">{t:.0%}</text>')
    if c.marker is not None:
        x = left + c.marker * w
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + h}" '
                     'stroke="#c9b27a" stroke-dasharray="3,3"/>')
        parts.append(f'<text x="{x + 4:.1f}" y="{top + 10}" fill="#c9b27a" font-size="11">'
                     "this unit</text>")
    for i, (name, values) in enumerate(c.series.items()):
        color, dash = COLORS[i % len(COLORS)], DASHES[i % len(DASHES)]
        points = " ".join(xy(f, v) for f, v in zip(c.fractions, values, strict=False))
        pattern = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{pattern} '
                     f'points="{points}"/>')
        y = top + 12 + 18 * i
        parts.append(f'<line x1="{left + w + 24}" y1="{y - 4}" x2="{left + w + 44}" '
                     f'y2="{y - 4}" stroke="{color}" stroke-width="2"{pattern}/>')
        parts.append(f'<text x="{left + w + 50}" y="{y}" fill="{color}" '
                     f'font-size="12">{_e(name)}</text>')
    parts.append(f'<text x="{left + w + 24}" y="{top + 14 + 18 * len(c.series)}" '
                 f'fill="#8a929e" font-size="11">y: {_e(c.ylabel)}</text>')
    parts.append(f'<text x="{left + w + 24}" y="{top + 30 + 18 * len(c.series)}" '
                 'fill="#8a929e" font-size="11">x: fraction of units deleted</text></svg>')
    return "".join(parts)


def _section(s: Section) -> str:
    out = [f"<section><h2>{_e(s.title)}</h2>"]
    if s.subtitle:
        out.append(f'<p class="sub">{_e(s.subtitle)}</p>')
    if s.note:
        out.append(f'<p class="note">{_e(s.note)}</p>')
    if s.pictures:
        out.append('<div class="pics">' + "".join(_picture(p, s.picture_px) for p in s.pictures)
                   + "</div>")
    if s.rows:
        out.append("<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                                       for k, v in s.rows) + "</table>")
    if s.curves is not None:
        out.append(curves_svg(s.curves))
    out.append("</section>\n")
    return "".join(out)


def unit_page(model: str, layer: str, unit: int, channels: int, subtitle: str,
              prev: int | None, next_: int | None, sections: Sequence[Section],
              footer: str) -> str:
    """`LAYER/UNIT.html`: everything known about one unit, with links to its neighbours."""
    crumbs = [Link("catalogue", "../index.html"), Link(layer, "index.html"), Link(f"unit {unit}")]
    steps = [Link("← unit " + ("" if prev is None else str(prev)),
                  "" if prev is None else f"{prev}.html"),
             Link("layer", "index.html"),
             Link(("" if next_ is None else f"unit {next_} ") + "→",
                  "" if next_ is None else f"{next_}.html")]
    return _page(f"{layer} unit {unit} — {model}", crumbs, steps,
                 f"{layer} · unit {unit} of {channels}", subtitle,
                 "".join(_section(s) for s in sections), footer)


def layer_page(model: str, layer: str, subtitle: str, tiles: Sequence[Picture],
               prev_layer: Link | None, next_layer: Link | None, sections: Sequence[Section],
               footer: str) -> str:
    """`LAYER/index.html`: the grid of preferred images, one linked tile per unit."""
    crumbs = [Link("catalogue", "../index.html"), Link(layer)]
    steps = [prev_layer or Link("← layer"), next_layer or Link("layer →")]
    grid = ('<section><h2>Preferred images</h2><div class="grid">'
            + "".join(f'<a href="{_href(t.href)}" title="{_e(t.tooltip or t.caption)}">'
                      f'<img src="{_href(t.src)}" alt="{_e(t.caption)}">{_e(t.caption)}</a>'
                      for t in tiles)
            + "</div></section>\n")
    return _page(f"{layer} — {model}", crumbs, steps, layer, subtitle,
                 grid + "".join(_section(s) for s in sections), footer)


def site_page(model: str, subtitle: str, rows: Sequence[tuple[Link, Sequence[str]]],
              columns: Sequence[str], footer: str) -> str:
    """`index.html`: the catalogued layers as a table, each linking to its index."""
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        f'<tr><td><a href="{_href(link.href)}">{_e(link.text)}</a></td>'
        + "".join(f"<td>{_e(v)}</td>" for v in values) + "</tr>"
        for link, values in rows)
    table = f"<section><h2>Layers</h2><table><tr>{head}</tr>{body}</table></section>\n"
    return _page(f"{model} — DeepVis catalogue", [Link("catalogue")], [],
                 f"{model}", subtitle, table, footer)


def report_page(model: str, layer: str, unit: int, channels: int, subtitle: str,
                sections: Sequence[Section], footer: str) -> str:
    """A unit report: one page, no links out, images inside it (`data:` URIs)."""
    return _page(f"{layer} unit {unit} — {model}", [Link("DeepVis unit report")], [],
                 f"{layer} · unit {unit} of {channels}", subtitle,
                 "".join(_section(s) for s in sections), footer)
