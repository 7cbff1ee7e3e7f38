"""The audit's report: one self-contained HTML page (the unit report's style sheet, no image,
no link out, nothing to fetch) and the same numbers as JSON, both written atomically.

Every text that reaches the HTML (group and class folder names, layers, paths) goes through
`html.escape`: a folder can be named anything.
"""

from __future__ import annotations

import html
from pathlib import Path

from app.core.atomic import atomic_write_bytes, atomic_write_json
from app.core.html_pages import STYLE
from app.engine.analyses.tcav.audit import AuditResult, Outcome

EXTRA_STYLE = """
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.yes { color: #7fd18b; } .no { color: #8a929e; }
.bar { display: inline-block; height: 8px; background: #8fc1ff; vertical-align: middle; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(v: float, digits: int = 3) -> str:
    return f'<td class="num">{v:.{digits}f}</td>'


def _outcome_rows(r: AuditResult, outcomes: list[Outcome]) -> str:
    names = r.class_names
    rows = []
    for o in outcomes:
        units = ", ".join(str(u) for u in o.units) or "—"
        cells = "".join(_num(o.group_accuracy[g]) for g in r.groups)
        gaps = "".join(_num(o.rate_gaps[c]) for c in r.examined)
        where = f"{_e(o.group)} at <code>{_e(o.layer)}</code>" if o.layer else "—"
        rows.append(f"<tr><td>{_e(o.edit)}</td><td>{where}</td><td>{_e(units)}</td>"
                    f"{_num(o.accuracy)}{cells}{_num(o.accuracy_gap)}{gaps}</tr>")
    head = ("<tr><th>edit</th><th>direction</th><th>units</th><th class=num>accuracy</th>"
            + "".join(f"<th class=num>acc. {_e(g)}</th>" for g in r.groups)
            + "<th class=num>accuracy gap</th>"
            + "".join(f"<th class=num>gap {_e(names[c])}</th>" for c in r.examined) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def audit_html(r: AuditResult) -> str:
    names, base = r.class_names, r.baseline
    groups = "".join(
        f"<tr><td>{_e(g)}</td><td class=num>{r.group_images[g]}</td>"
        f"{_num(base.group_accuracy[g])}"
        + "".join(_num(base.group_rates[g][c]) for c in r.examined) + "</tr>"
        for g in r.groups)
    group_head = ("<tr><th>group</th><th class=num>images</th><th class=num>accuracy</th>"
                  + "".join(f"<th class=num>predicted {_e(names[c])}</th>" for c in r.examined)
                  + "</tr>")
    gaps = "".join(
        f"<tr><td>{_e(names[c])} ({c})</td>{_num(base.rate_gaps[c])}<td><span class=bar "
        f'style="width:{round(200 * base.rate_gaps[c])}px"></span></td></tr>'
        for c in r.examined)
    tcav = "".join(
        f"<tr><td>{_e(g)}</td><td>{_e(names[c])}</td><td><code>{_e(s.layer)}</code></td>"
        f"{_num(s.cav_accuracy)}{_num(s.score)}"
        f"{_num(sum(s.random_scores) / len(s.random_scores))}"
        f'<td class="num">{s.p_value:.2g}</td>'
        f"<td class={'yes' if s.significant else 'no'}>{'yes' if s.significant else 'no'}"
        "</td></tr>"
        for g, c, t in r.tcav for s in t.layers)
    threshold = r.tcav[0][2].threshold if r.tcav else 0.05
    units = "".join(
        f"<tr><td>{_e(d.group)}</td><td><code>{_e(d.layer)}</code></td><td>"
        + ", ".join(f"{u} ({w:+.2f})" for u, w in d.units) + "</td></tr>"
        for d in r.directions)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Audit of {_e(r.model)}: {_e(", ".join(r.groups))}</title>
<style>{STYLE}{EXTRA_STYLE}</style></head>
<body><main>
<h1>Bias audit of {_e(r.model)}</h1>
<p class=sub>{_e(r.dataset)} · groups {_e(", ".join(r.groups))} · overall accuracy
{base.accuracy:.3f} · accuracy gap {base.accuracy_gap:.3f}</p>
<section><h2>Groups</h2>
<p class=sub>Accuracy, and the rate at which each examined class is predicted.</p>
<table>{group_head}{groups}</table></section>
<section><h2>Largest gaps</h2>
<p class=sub>Accuracy gap (max − min over the groups): {base.accuracy_gap:.3f}. Classes whose
predicted rate differs most between the groups:</p>
<table><tr><th>class</th><th class=num>rate gap</th><th></th></tr>{gaps}</table></section>
<section><h2>Does the class depend on the group's concept? (TCAV)</h2>
<p class=sub>Each group's images as the concept, the other groups' as random sets;
significant: two-sided Student's t-test against random CAVs, p &lt; {threshold:.3g}
(Bonferroni over the layers).</p>
<table><tr><th>group</th><th>class</th><th>layer</th><th class=num>CAV accuracy</th>
<th class=num>score</th><th class=num>random</th><th class=num>p-value</th>
<th>significant</th></tr>{tcav}</table></section>
<section><h2>The group's units</h2>
<p class=sub>The units most aligned with each group's direction (its largest CAV
components, signed).</p>
<table><tr><th>group</th><th>layer</th><th>units (component)</th></tr>{units}</table>
</section>
<section><h2>Edits</h2>
<p class=sub><b>zero units</b>: those channels set to 0 at the layer; <b>erase
direction</b>: the group's CAV component replaced by its dataset mean at every position.</p>
{_outcome_rows(r, [base, *r.edits])}</section>
<footer>deepvis audit · {len(r.skipped)} unreadable file(s) skipped ·
{r.seconds:.1f} s</footer>
</main></body></html>
"""


def write_report(r: AuditResult, folder: str | Path) -> tuple[Path, Path]:
    """(audit.html, audit.json) written atomically under `folder` (created)."""
    out = Path(folder).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_json(out / "audit.json", r.to_json())
    html_path = atomic_write_bytes(out / "audit.html", audit_html(r).encode())
    return html_path, json_path
