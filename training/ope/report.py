"""One self-contained HTML report of an evaluation: the table, and plots drawn as inline
SVG by hand (no plotting dependency, no network needed to open the file): each
estimator's interval per policy, the paired differences, the estimate per position and
per banner category, and the effective sample size per position."""
from __future__ import annotations

import html
from pathlib import Path

from .evaluate import EvaluationResult

COLORS = {"ips": "#8c6d31", "snips": "#d62728", "dm": "#1f77b4", "dr": "#2ca02c"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def forest(rows: list[tuple[str, float, float, float, str]], width: int = 760, zero: bool = False) -> str:
    """Horizontal interval plot: one row per (label, value, low, high, colour)."""
    if not rows:
        return ""
    row_h, left, right, top = 22, 260, 30, 24
    h = top + row_h * len(rows) + 30
    vals = [v for _, v, lo, hi, _ in rows for v in (v, lo, hi) if v == v]
    lo_x, hi_x = min(vals + ([0.0] if zero else [])), max(vals + ([0.0] if zero else []))
    if hi_x - lo_x < 1e-12:
        lo_x, hi_x = lo_x - 0.5, hi_x + 0.5
    pad = (hi_x - lo_x) * 0.05
    lo_x, hi_x = lo_x - pad, hi_x + pad

    def X(v: float) -> float:
        return left + (v - lo_x) / (hi_x - lo_x) * (width - left - right)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" font-family="sans-serif" font-size="12">']
    for i in range(6):  # axis ticks
        v = lo_x + (hi_x - lo_x) * i / 5
        x = X(v)
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{h - 24}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{h - 8}" text-anchor="middle" fill="#555">{v:.4g}</text>')
    if zero and lo_x < 0 < hi_x:
        out.append(f'<line x1="{X(0):.1f}" y1="{top - 6}" x2="{X(0):.1f}" y2="{h - 24}" stroke="#999" stroke-dasharray="4,3"/>')
    for i, (label, v, lo, hi, color) in enumerate(rows):
        y = top + i * row_h + row_h / 2
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{_esc(label)}</text>')
        if lo == lo and hi == hi:
            out.append(f'<line x1="{X(lo):.1f}" y1="{y:.1f}" x2="{X(hi):.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="2"/>')
            for e in (lo, hi):
                out.append(f'<line x1="{X(e):.1f}" y1="{y - 5:.1f}" x2="{X(e):.1f}" y2="{y + 5:.1f}" stroke="{color}" stroke-width="2"/>')
        out.append(f'<circle cx="{X(v):.1f}" cy="{y:.1f}" r="4" fill="{color}"><title>{_esc(label)}: {v:.5f} [{lo:.5f}, {hi:.5f}]</title></circle>')
    out.append("</svg>")
    return "".join(out)


def bars(groups: list[str], series: dict[str, list[float]], width: int = 760, log_scale: bool = False,
         fmt: str = "{:,.0f}") -> str:
    """Grouped vertical bars: ``series`` name -> one value per group."""
    import math

    names = list(series)
    h, top, bottom, left = 240, 20, 50, 60
    vmax = max([v for s in series.values() for v in s] + [1e-12])
    tr = (lambda v: math.log10(max(v, 1.0))) if log_scale else (lambda v: v)
    tmax = max(tr(vmax), 1e-12)
    gw = (width - left - 10) / max(len(groups), 1)
    bw = gw * 0.8 / max(len(names), 1)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h + 20 * ((len(names) + 3) // 4)}" font-family="sans-serif" font-size="12">']
    base = h - bottom
    out.append(f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#555"/>')
    for gi, g in enumerate(groups):
        gx = left + gi * gw + gw * 0.1
        for si, name in enumerate(names):
            v = series[name][gi]
            bh = (tr(v) / tmax) * (base - top) if v > 0 else 0
            x = gx + si * bw
            out.append(f'<rect x="{x:.1f}" y="{base - bh:.1f}" width="{bw * 0.9:.1f}" height="{bh:.1f}" '
                       f'fill="{PALETTE[si % len(PALETTE)]}"><title>{_esc(name)}, {_esc(g)}: {fmt.format(v)}</title></rect>')
            out.append(f'<text x="{x + bw * 0.45:.1f}" y="{base - bh - 3:.1f}" text-anchor="middle" font-size="10">{_esc(fmt.format(v))}</text>')
        out.append(f'<text x="{left + gi * gw + gw / 2:.1f}" y="{base + 16}" text-anchor="middle">{_esc(g)}</text>')
    for si, name in enumerate(names):  # legend
        lx = left + (si % 4) * 180
        ly = h - 14 + 20 * (si // 4)
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{PALETTE[si % len(PALETTE)]}"/>'
                   f'<text x="{lx + 16}" y="{ly}">{_esc(name)}</text>')
    if log_scale:
        out.append(f'<text x="4" y="{top}" fill="#555">log scale</text>')
    out.append("</svg>")
    return "".join(out)


def _table(result: EvaluationResult) -> str:
    est = list(next(iter(result.policies.values())).keys())
    head = "<tr><th>policy</th>" + "".join(f"<th>{e.upper()}</th>" for e in est) + "</tr>"
    rows = []
    for name, vals in result.policies.items():
        ok = result.diagnostics.get(name, {}).get("ips_reliable", True)
        cells = []
        for e in est:
            v = vals[e]
            flag = "" if ok or e not in ("ips", "snips") else ' class="bad" title="unreliable: see warnings"'
            cells.append(f"<td{flag}>{v['value']:.4f}<br><small>[{v['ci_low']:.4f}, {v['ci_high']:.4f}]</small>"
                         + ("" if not flag else "<br><small>unreliable</small>") + "</td>")
        rows.append(f"<tr><th>{_esc(name)}</th>{''.join(cells)}</tr>")
    for name, vals in result.differences.items():
        rows.append(f"<tr class='diff'><th>{_esc(name)}</th>" + "".join(
            f"<td>{vals[e]['value']:+.4f}<br><small>[{vals[e]['ci_low']:+.4f}, {vals[e]['ci_high']:+.4f}]</small></td>" for e in est) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def render(result: EvaluationResult, title: str = "Offline A/B evaluation") -> str:
    names = list(result.policies)
    est = list(next(iter(result.policies.values())).keys())
    main_est = "dr" if "dr" in est else "snips"
    pol_color = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    parts = [f"<h1>{_esc(title)}</h1>",
             f"<p>{result.n_requests:,} requests evaluated (of {result.n_logged_requests:,} logged"
             f"{f', {result.n_partial_requests:,} of them partial' if result.n_partial_requests else ''}); value = expected clicks per "
             f"request on the first {result.slots} positions; 95% percentile bootstrap intervals from {result.n_boot} resamples "
             f"of {'staff members with all their requests' if result.resample == 'staff' else 'requests'} (the same resamples for every policy, so differences are paired). Click model for DM and DR: "
             f"{_esc(result.click_model or 'none')}; DM's interval spans DR's, the logs' only measure of the click "
             f"model's own error.</p>"]
    if result.warnings:
        parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(f"<li>{_esc(w)}</li>" for w in result.warnings) + "</ul></div>")
    parts += ["<h2>Estimates</h2>", _table(result)]
    parts += ["<h2>Each estimator's interval per policy</h2>",
              forest([(f"{n} · {e.upper()}", v[e]["value"], v[e]["ci_low"], v[e]["ci_high"], COLORS.get(e, "#333"))
                      for n, v in result.policies.items() for e in est])]
    if result.differences:
        parts += ["<h2>Paired differences against the first policy</h2>",
                  forest([(f"{n} · {e.upper()}", v[e]["value"], v[e]["ci_low"], v[e]["ci_high"], COLORS.get(e, "#333"))
                          for n, v in result.differences.items() for e in est], zero=True)]
    if result.by_position:
        parts += [f"<h2>Estimate per position ({main_est.upper()})</h2>",
                  forest([(f"{n} · position {k + 1}", d["value"], d["ci_low"], d["ci_high"], pol_color[n])
                          for n in names for k, d in enumerate(result.by_position[n][main_est])])]
    if result.by_category:
        cats = list(next(iter(result.by_category.values()))[main_est].keys())
        parts += [f"<h2>Estimate per banner category ({main_est.upper()})</h2>",
                  forest([(f"{n} · {c}", result.by_category[n][main_est][c]["value"], result.by_category[n][main_est][c]["ci_low"],
                           result.by_category[n][main_est][c]["ci_high"], pol_color[n]) for c in cats for n in names])]
    if result.diagnostics:
        groups = [f"position {k + 1}" for k in range(result.slots)]
        series = {n: [p["ess"] for p in d["positions"]] for n, d in result.diagnostics.items()}
        parts += ["<h2>Effective sample size per position</h2>",
                  "<p>Kish effective sample size of the importance weights (sum w)²/sum w²: how many logged requests the "
                  "IPS, SNIPS and DR corrections effectively rest on.</p>", bars(groups, series, log_scale=True)]
        rows = "".join(
            f"<tr><th>{_esc(n)}</th><td>{p['position']}</td><td>{p['ess']:,.0f}</td><td>{p['ess_share']:.2%}</td>"
            f"<td>{p['max_weight']:,.2f}</td><td>{p['max_weight_share']:.3%}</td>"
            f"<td>{'' if p['min_propensity_used'] is None else format(p['min_propensity_used'], '.4g')}</td><td>{p['support_gap']:.2%}</td></tr>"
            for n, d in result.diagnostics.items() for p in d["positions"])
        parts.append("<table><tr><th>policy</th><th>position</th><th>ESS</th><th>ESS share</th><th>max weight</th>"
                     "<th>its share of weight</th><th>smallest propensity used</th><th>support gap</th></tr>" + rows + "</table>")
    if result.exclusions:
        parts.append("<h2>Exclusions</h2><ul>" + "".join(f"<li>{v:,} {_esc(k)}</li>" for k, v in result.exclusions.items()) + "</ul>")
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}th{background:#f6f6f6}"
             ".bad{background:#fde0dc}.diff th{font-style:italic}.warn{background:#fff4e0;border:1px solid #e0a040;padding:8px}")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_esc(title)}</title><style>{style}</style></head>"
            f"<body>{''.join(parts)}</body></html>")


def write_report(path, result: EvaluationResult, title: str = "Offline A/B evaluation") -> None:
    Path(path).write_text(render(result, title), encoding="utf-8")
