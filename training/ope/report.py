"""One self-contained HTML report of an evaluation: the table, and plots drawn as inline
SVG by hand (no plotting dependency, no network needed to open the file): each
estimator's interval per policy, the paired differences, the estimate per position and
per banner category, and the effective sample size per position."""
from __future__ import annotations

from pathlib import Path

from ..svg import COLORS, PALETTE, bars, esc, forest, page
from .evaluate import EvaluationResult


def estimates_table(result: EvaluationResult) -> str:
    """Each policy's estimates with their intervals, then the paired differences."""
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
        rows.append(f"<tr><th>{esc(name)}</th>{''.join(cells)}</tr>")
    for name, vals in result.differences.items():
        rows.append(f"<tr class='diff'><th>{esc(name)}</th>" + "".join(
            f"<td>{vals[e]['value']:+.4f}<br><small>[{vals[e]['ci_low']:+.4f}, {vals[e]['ci_high']:+.4f}]</small></td>" for e in est) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def render(result: EvaluationResult, title: str = "Offline A/B evaluation") -> str:
    names = list(result.policies)
    est = list(next(iter(result.policies.values())).keys())
    main_est = "dr" if "dr" in est else "snips"
    pol_color = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    parts = [f"<h1>{esc(title)}</h1>",
             f"<p>{result.n_requests:,} requests evaluated (of {result.n_logged_requests:,} logged"
             f"{f', {result.n_partial_requests:,} of them partial' if result.n_partial_requests else ''}); value = expected clicks per "
             f"request on the first {result.slots} positions; 95% percentile bootstrap intervals from {result.n_boot} resamples "
             f"of {'staff members with all their requests' if result.resample == 'staff' else 'requests'} (the same resamples for every policy, so differences are paired). Click model for DM and DR: "
             f"{esc(result.click_model or 'none')}; DM's interval spans DR's, the logs' only measure of the click "
             f"model's own error.</p>"]
    if result.warnings:
        parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(f"<li>{esc(w)}</li>" for w in result.warnings) + "</ul></div>")
    parts += ["<h2>Estimates</h2>", estimates_table(result)]
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
            f"<tr><th>{esc(n)}</th><td>{p['position']}</td><td>{p['ess']:,.0f}</td><td>{p['ess_share']:.2%}</td>"
            f"<td>{p['max_weight']:,.2f}</td><td>{p['max_weight_share']:.3%}</td>"
            f"<td>{'' if p['min_propensity_used'] is None else format(p['min_propensity_used'], '.4g')}</td><td>{p['support_gap']:.2%}</td></tr>"
            for n, d in result.diagnostics.items() for p in d["positions"])
        parts.append("<table><tr><th>policy</th><th>position</th><th>ESS</th><th>ESS share</th><th>max weight</th>"
                     "<th>its share of weight</th><th>smallest propensity used</th><th>support gap</th></tr>" + rows + "</table>")
    if result.exclusions:
        parts.append("<h2>Exclusions</h2><ul>" + "".join(f"<li>{v:,} {esc(k)}</li>" for k, v in result.exclusions.items()) + "</ul>")
    return page(title, parts)


def write_report(path, result: EvaluationResult, title: str = "Offline A/B evaluation") -> None:
    Path(path).write_text(render(result, title), encoding="utf-8")
