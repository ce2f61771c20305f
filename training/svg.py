"""Plots drawn as inline SVG by hand, and the page around them, shared by the HTML reports
(training and offline evaluation): a report must open anywhere, with no network, no
script and no plotting library, so each plot is a few lines of SVG text."""
from __future__ import annotations

import html
import math
import unicodedata

COLORS = {"ips": "#8c6d31", "snips": "#d62728", "dm": "#1f77b4", "dr": "#2ca02c"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
NEGATIVE, POSITIVE, NEUTRAL = "#c0504d", "#2f6fa8", "#4a7fb0"

STYLE = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;vertical-align:top}th{background:#f6f6f6}"
         "tr>th:first-child{white-space:nowrap}"
         ".bad{background:#fde0dc}.diff th{font-style:italic}.warn{background:#fff4e0;border:1px solid #e0a040;padding:8px}"
         ".chosen{background:#e4f0e0;font-weight:bold}.note{color:#555;font-size:90%}td.l,th.l{text-align:left}"
         ".decision{border:2px solid #888;padding:8px 12px;margin:1em 0}.promoted{border-color:#2ca02c;background:#eef7ec}"
         ".kept{border-color:#8c6d31;background:#f7f2e6}.undecided{border-color:#1f77b4;background:#eaf2f9}svg{display:block;margin:0.5em 0}")

_FONT = 12


def esc(s) -> str:
    return html.escape(str(s), quote=True)


def text_width(s: str, size: float = _FONT) -> float:
    """A generous estimate of the drawn width of ``s`` in a sans-serif font: SVG text does
    not wrap or measure itself, so margins are sized from this to keep labels uncut."""
    w = 0.0
    for ch in str(s):
        if unicodedata.east_asian_width(ch) in ("W", "F"):
            w += 1.0
        elif ch.isupper() or ch in "mwMW@%":
            w += 0.72
        elif ch in "il.,:;'|!() ":
            w += 0.32
        else:
            w += 0.58
    return w * size


def _svg_open(width: float, height: float) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'font-family="sans-serif" font-size="{_FONT}">')


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: labels read as 0.02, 0.04, not 0.0213."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _tick_label(v: float, percent: bool = False) -> str:
    if abs(v) < 1e-12:
        return "0"
    if percent:
        return f"{100 * v:.4g}%"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def forest(rows: list[tuple[str, float, float, float, str]], width: int = 760, zero: bool = False) -> str:
    """Horizontal interval plot: one row per (label, value, low, high, colour). The label
    column is as wide as the longest label, so model versions show in full."""
    if not rows:
        return ""
    row_h, right, top = 22, 30, 24
    left = max(120, min(width // 2, int(max(text_width(r[0]) for r in rows)) + 16))
    h = top + row_h * len(rows) + 30
    vals = [v for _, v, lo, hi, _ in rows for v in (v, lo, hi) if v == v]
    lo_x, hi_x = min(vals + ([0.0] if zero else [])), max(vals + ([0.0] if zero else []))
    if hi_x - lo_x < 1e-12:
        lo_x, hi_x = lo_x - 0.5, hi_x + 0.5
    pad = (hi_x - lo_x) * 0.05
    lo_x, hi_x = lo_x - pad, hi_x + pad

    def X(v: float) -> float:
        return left + (v - lo_x) / (hi_x - lo_x) * (width - left - right)

    out = [_svg_open(width, h)]
    for v in _ticks(lo_x, hi_x):
        x = X(v)
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{h - 24}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{h - 8}" text-anchor="middle" fill="#555">{_tick_label(v)}</text>')
    if zero and lo_x < 0 < hi_x:
        out.append(f'<line x1="{X(0):.1f}" y1="{top - 6}" x2="{X(0):.1f}" y2="{h - 24}" stroke="#999" stroke-dasharray="4,3"/>')
    for i, (label, v, lo, hi, color) in enumerate(rows):
        y = top + i * row_h + row_h / 2
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{esc(label)}</text>')
        if lo == lo and hi == hi:
            out.append(f'<line x1="{X(lo):.1f}" y1="{y:.1f}" x2="{X(hi):.1f}" y2="{y:.1f}" stroke="{color}" stroke-width="2"/>')
            for e in (lo, hi):
                out.append(f'<line x1="{X(e):.1f}" y1="{y - 5:.1f}" x2="{X(e):.1f}" y2="{y + 5:.1f}" stroke="{color}" stroke-width="2"/>')
        out.append(f'<circle cx="{X(v):.1f}" cy="{y:.1f}" r="4" fill="{color}"><title>{esc(label)}: {v:.5f} [{lo:.5f}, {hi:.5f}]</title></circle>')
    out.append("</svg>")
    return "".join(out)


def bars(groups: list[str], series: dict[str, list[float]], width: int = 760, log_scale: bool = False,
         fmt: str = "{:,.0f}") -> str:
    """Grouped vertical bars: ``series`` name -> one value per group."""
    names = list(series)
    h, top, bottom, left = 240, 20, 50, 60
    vmax = max([v for s in series.values() for v in s] + [1e-12])
    tr = (lambda v: math.log10(max(v, 1.0))) if log_scale else (lambda v: v)
    tmax = max(tr(vmax), 1e-12)
    gw = (width - left - 10) / max(len(groups), 1)
    bw = gw * 0.8 / max(len(names), 1)
    out = [_svg_open(width, h + 20 * ((len(names) + 3) // 4))]
    base = h - bottom
    out.append(f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#555"/>')
    for gi, g in enumerate(groups):
        gx = left + gi * gw + gw * 0.1
        for si, name in enumerate(names):
            v = series[name][gi]
            bh = (tr(v) / tmax) * (base - top) if v > 0 else 0
            x = gx + si * bw
            out.append(f'<rect x="{x:.1f}" y="{base - bh:.1f}" width="{bw * 0.9:.1f}" height="{bh:.1f}" '
                       f'fill="{PALETTE[si % len(PALETTE)]}"><title>{esc(name)}, {esc(g)}: {fmt.format(v)}</title></rect>')
            out.append(f'<text x="{x + bw * 0.45:.1f}" y="{base - bh - 3:.1f}" text-anchor="middle" font-size="10">{esc(fmt.format(v))}</text>')
        out.append(f'<text x="{left + gi * gw + gw / 2:.1f}" y="{base + 16}" text-anchor="middle">{esc(g)}</text>')
    for si, name in enumerate(names):  # legend
        lx = left + (si % 4) * 180
        ly = h - 14 + 20 * (si // 4)
        out.append(f'<rect x="{lx}" y="{ly - 10}" width="12" height="12" fill="{PALETTE[si % len(PALETTE)]}"/>'
                   f'<text x="{lx + 16}" y="{ly}">{esc(name)}</text>')
    if log_scale:
        out.append(f'<text x="4" y="{top}" fill="#555">log scale</text>')
    out.append("</svg>")
    return "".join(out)


def hbars(rows: list[tuple[str, float, str, str]], width: int = 900, axis_label: str = "", percent: bool = False) -> str:
    """Horizontal bars, one row per (label, value, text, colour): the label on the left,
    the bar from zero (negative values go left of it) and the text, e.g. the number and
    its count, in a column of its own on the right, so nothing overlaps however many rows."""
    if not rows:
        return ""
    row_h, top = 22, 8
    left = int(max(text_width(r[0]) for r in rows)) + 16
    text_w = int(max(text_width(r[2]) for r in rows)) + 12
    plot_w = max(width - left - text_w - 10, 120)
    width = left + plot_w + text_w + 10
    lo, hi = min(0.0, *(r[1] for r in rows)), max(0.0, *(r[1] for r in rows))
    if hi - lo < 1e-15:
        hi = lo + 1.0
    ticks = _ticks(lo, hi, 4)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    base = top + row_h * len(rows)
    h = base + (34 if axis_label else 22)

    def X(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    out = [_svg_open(width, h)]
    for v in ticks:
        out.append(f'<line x1="{X(v):.1f}" y1="{top}" x2="{X(v):.1f}" y2="{base}" stroke="#eee"/>'
                   f'<text x="{X(v):.1f}" y="{base + 14}" text-anchor="middle" fill="#555" font-size="11">{_tick_label(v, percent)}</text>')
    for i, (label, v, text, color) in enumerate(rows):
        y = top + i * row_h
        x0, x1 = sorted((X(0), X(v)))
        out.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{esc(label)}</text>'
                   f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 0.5):.1f}" height="{row_h - 8}" fill="{color}">'
                   f'<title>{esc(label)}: {esc(text)}</title></rect>'
                   f'<text x="{left + plot_w + 10}" y="{y + 15}">{esc(text)}</text>')
    out.append(f'<line x1="{X(0):.1f}" y1="{top}" x2="{X(0):.1f}" y2="{base}" stroke="#555"/>')
    if axis_label:
        out.append(f'<text x="{left + plot_w / 2:.1f}" y="{base + 30}" text-anchor="middle" fill="#555">{esc(axis_label)}</text>')
    out.append("</svg>")
    return "".join(out)


def calibration_plot(points: list[tuple[float, float, float, float]], size: int = 420,
                     x_label: str = "predicted click rate", y_label: str = "observed click rate") -> str:
    """Predicted against observed rate, one point per (predicted, observed, low, high) with
    the observed rate's interval, on equal axes with the diagonal where a calibrated model's
    points lie."""
    if not points:
        return ""
    left, bottom, top, right = 64, 48, 12, 16
    vmax = max(max(p[0], p[3] if p[3] == p[3] else p[1]) for p in points)
    ticks = _ticks(0.0, vmax * 1.05, 5)
    hi = max(ticks[-1], vmax * 1.05, 1e-9)
    plot = size - left - right
    h = top + plot + bottom

    def X(v: float) -> float:
        return left + v / hi * plot

    def Y(v: float) -> float:
        return top + plot - v / hi * plot

    out = [_svg_open(size, h)]
    for v in ticks:
        out.append(f'<line x1="{X(v):.1f}" y1="{top}" x2="{X(v):.1f}" y2="{top + plot}" stroke="#eee"/>'
                   f'<line x1="{left}" y1="{Y(v):.1f}" x2="{left + plot}" y2="{Y(v):.1f}" stroke="#eee"/>'
                   f'<text x="{X(v):.1f}" y="{top + plot + 16}" text-anchor="middle" fill="#555" font-size="11">{_tick_label(v)}</text>'
                   f'<text x="{left - 6}" y="{Y(v) + 4:.1f}" text-anchor="end" fill="#555" font-size="11">{_tick_label(v)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="none" stroke="#555"/>'
               f'<line x1="{X(0):.1f}" y1="{Y(0):.1f}" x2="{X(hi):.1f}" y2="{Y(hi):.1f}" stroke="#999" stroke-dasharray="5,4"/>')
    for pred, obs, lo, up in points:
        if lo == lo and up == up:
            out.append(f'<line x1="{X(pred):.1f}" y1="{Y(lo):.1f}" x2="{X(pred):.1f}" y2="{Y(up):.1f}" stroke="{NEUTRAL}" stroke-width="1.5"/>')
        out.append(f'<circle cx="{X(pred):.1f}" cy="{Y(obs):.1f}" r="4" fill="{NEUTRAL}">'
                   f'<title>predicted {pred:.4g}, observed {obs:.4g}</title></circle>')
    out.append(f'<text x="{left + plot / 2:.1f}" y="{h - 8}" text-anchor="middle">{esc(x_label)}</text>'
               f'<text transform="translate(16,{top + plot / 2:.1f}) rotate(-90)" text-anchor="middle">{esc(y_label)}</text>')
    out.append("</svg>")
    return "".join(out)


def page(title: str, parts: list[str]) -> str:
    """A whole HTML document: the style inline, nothing fetched."""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>")
