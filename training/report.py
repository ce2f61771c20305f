"""The training report: one self-contained HTML page per trained model (report.html in
its folder), for the people who decide whether to ship it. It shows the data the model
learned from, click rates by position, category, role and school level, each model's
validation metrics against the popularity baseline, the chosen model's calibration and
the features that move its scores most, and, once a retrain has run its offline A/B
gate, that evaluation and the decision. Plots are inline SVG (training.svg)."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from .objective import Objective
from .ope.evaluate import EvaluationResult
from .ope.report import estimates_table
from .svg import COLORS, NEGATIVE, NEUTRAL, PALETTE, POSITIVE, calibration_plot, esc, forest, hbars, page

REPORT_FILE = "report.html"
DECISIONS = ("promoted", "undecided", "kept")
PART_COLORS = {"training": PALETTE[0], "validation": PALETTE[1]}


@dataclass
class RateRow:
    """Impressions and clicks of one group (a position, a category, a role...)."""

    label: str
    impressions: int
    clicks: int

    @property
    def rate(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0


@dataclass
class DayVolume:
    day: str  # the calendar day in KST, e.g. "2026-03-02 Mon"
    part: str  # "training" or "validation"
    rows: int
    clicks: int


@dataclass
class CalibrationBin:
    rows: int
    clicks: int
    predicted: float  # mean predicted click probability at the logged position
    observed: float
    low: float  # 95% Wilson interval of the observed rate
    high: float


@dataclass
class FeatureEffect:
    """One column's effect on the scores: weight x spread (linear) or permutation importance."""

    feature: str
    effect: float
    weight: float | None = None
    spread: float | None = None
    sd: float | None = None  # permutation importance: its spread over the repeats


@dataclass
class TrainingReportData:
    """Everything the report shows, filled by train(): kept on TrainResult so a later step
    (the retrain command's offline A/B gate) can render the report again with its section."""

    version: str
    created: str
    chosen: str
    slots: int
    training_data: dict  # as in metadata.json
    train_config: dict  # as in metadata.json
    validation: dict  # as in metadata.json: model kind or "popularity" -> metrics
    daily: list[DayVolume] = field(default_factory=list)
    click_rates: dict[str, list[RateRow]] = field(default_factory=dict)  # "position", "banner category", ...
    calibration: list[CalibrationBin] = field(default_factory=list)
    calibrated_model: str = ""  # which fit the calibration describes
    importance_method: str = ""  # "weight x spread" or "permutation"
    importance: list[FeatureEffect] = field(default_factory=list)
    importance_rows: int = 0  # validation rows the importance was measured on
    position_weight: float | None = None  # the linear model's weight of log(position)


@dataclass
class OfflineAB:
    """The offline A/B gate of a retrain: the evaluation (EvaluationResult.to_json()), the
    decision and why, in one sentence."""

    evaluation: dict
    decision: str  # "promoted", "undecided" or "kept"
    reason: str

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, got {self.decision!r}")


def num(v) -> str:
    """Counts with thousands separators, other numbers to 4 significant digits."""
    if v is None or v != v:
        return "-"
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return f"{int(v):,}"
    return f"{v:.4g}"


def pct(rate: float) -> str:
    """A rate as a percentage to 3 significant digits, trailing zeros kept (12.0%, 0.512%)."""
    x = 100 * rate
    if x <= 0 or x != x:
        return "0%" if x == 0 else "-"
    return f"{x:.{max(0, 2 - math.floor(math.log10(x)))}f}%"


def write_training_report(path: str | Path, data: TrainingReportData, offline_ab: OfflineAB | None = None) -> Path:
    """Write the report (with the offline A/B section when ``offline_ab`` is given)."""
    path = Path(path)
    path.write_text(render_training_report(data, offline_ab), encoding="utf-8")
    return path


def render_training_report(data: TrainingReportData, offline_ab: OfflineAB | None = None) -> str:
    """The page as text; the A/B decision, when there is one, comes first: it is what a retrain's reader needs."""
    title = f"Training report: {data.version}"
    parts = [f"<h1>{esc(title)}</h1>",
             f"<p>Model <b>{esc(data.version)}</b> ({esc(data.chosen)}), trained {esc(data.created)}. "
             f"Numbers are rounded to 4 significant digits (rates to 3); the exact values are in metadata.json.</p>"]
    if offline_ab is not None:
        parts += _offline_ab(offline_ab)
    parts += _data_section(data) + _rates_section(data) + _validation_section(data)
    parts += _calibration_section(data) + _importance_section(data)
    return page(title, parts)


def _kv_table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th class='l'>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows) + "</table>"


def _data_section(d: TrainingReportData) -> list[str]:
    td = d.training_data
    rows = [("data window (UTC)", f"{td['from']} to {td['to']}"),
            ("validation from (UTC)", td["validation_from"]),
            ("impressions (rows)", num(td["rows"])), ("requests", num(td["requests"])),
            ("clicks", f"{num(td['clicks'])} ({pct(td['clicks'] / max(td['rows'], 1))} of impressions)"),
            ("staff", num(td.get("staff"))), ("banners", num(td.get("banners"))),
            ("training rows", num(td["train_rows"])), ("validation rows", num(td["validation_rows"])),
            ("rows fitted (non-clicks downsampled)", num(td["fit_rows"])),
            ("history rows (older logs, features only)", num(td["history_rows"]))]
    cfg = d.train_config
    if cfg:
        rows += [("models compared", ", ".join(cfg.get("models", ()))),
                 ("held out for validation", _holdout(cfg.get("holdout_days"))),
                 ("refit on every row before saving", "yes" if cfg.get("refit") else "no"), ("seed", num(cfg.get("seed")))]
    if td.get("source"):
        rows.append(("source", str(td["source"])))
    out = ["<h2>1. Data</h2>", _kv_table(rows)]
    if d.daily:
        out += ["<p>Impressions per day (KST), by the part of the split they fall in:</p>",
                hbars([(f"{v.day} · {v.part}", v.rows, f"{num(v.rows)} rows, {num(v.clicks)} clicks ({pct(v.clicks / max(v.rows, 1))})",
                        PART_COLORS.get(v.part, NEUTRAL)) for v in d.daily], axis_label="impressions")]
    return out


def _rates_section(d: TrainingReportData) -> list[str]:
    if not d.click_rates:
        return []
    out = ["<h2>2. Click rates</h2>",
           "<p>Clicks over impressions in the whole training log (training and validation days), with the counts. "
           "Rates by position mix the position's effect with what was shown there; the others mix every position.</p>"]
    for name, rows in d.click_rates.items():
        out += [f"<h3>by {esc(name)}</h3>",
                hbars([(r.label, r.rate, f"{pct(r.rate)}  ({num(r.clicks)} / {num(r.impressions)})", NEUTRAL) for r in rows],
                      axis_label="click rate", percent=True)]
    return out


def _validation_section(d: TrainingReportData) -> list[str]:
    k = d.slots
    objective = Objective.from_dict(d.train_config.get("objective"))
    value = objective.metric(k)
    cols = [("log_loss", "log loss"), ("auc", "AUC"), (f"ndcg@{k}", f"NDCG@{k}"), (value, f"{value} (IPS)")]
    head = "<tr><th class='l'>model</th>" + "".join(f"<th>{esc(t)}</th>" for _, t in cols) + "<th class='l'></th></tr>"
    body = []
    for name, m in d.validation.items():
        chosen = name == d.chosen
        note = "◀ chosen" if chosen else ("baseline" if name == "popularity" else "")
        if "C" in m:
            note += f" (C = {num(m['C'])})"
        body.append(f"<tr{' class=chosen' if chosen else ''}><th class='l'>{esc(name)}</th>"
                    + "".join(f"<td>{num(m.get(key))}</td>" for key, _ in cols) + f"<td class='l'>{esc(note.strip())}</td></tr>")
    return ["<h2>3. Validation metrics</h2>",
            f"<p>On the validation rows (from {esc(d.training_data['validation_from'])}). Log loss and AUC of the click "
            f"probability at the logged position; NDCG@{k} re-ranks each request's shown banners against its clicks "
            f"(it favours orders close to the logging policy); {value} is the IPS estimate of {objective.unit} per "
            f"request of the model's ranking (the objective: {esc(objective.name)}). The first model kind is kept "
            f"unless another's {value} is higher by more than two "
            f"standard errors of their difference over the same requests (one day cannot tell closer models "
            f"apart).</p>",
            f"<table>{head}{''.join(body)}</table>"]


def _calibration_section(d: TrainingReportData) -> list[str]:
    if not d.calibration:
        return []
    bins = d.calibration
    n = sum(b.rows for b in bins)
    pred = sum(b.predicted * b.rows for b in bins) / max(n, 1)
    obs = sum(b.clicks for b in bins) / max(n, 1)
    rows = "".join(f"<tr><td>{i + 1}</td><td>{num(b.rows)}</td><td>{num(b.clicks)}</td><td>{num(b.predicted)}</td>"
                   f"<td>{num(b.observed)}</td><td>{num(b.low)} – {num(b.high)}</td></tr>" for i, b in enumerate(bins))
    return ["<h2>4. Calibration</h2>",
            f"<p>The {esc(d.calibrated_model)} on the {num(n)} validation rows, in {len(bins)} bins of equal size by "
            f"predicted click probability at the logged position. A calibrated model's points lie on the dashed "
            f"diagonal; the bars are the observed rate's 95% intervals. Over all rows: predicted {num(pred)}, "
            f"observed {num(obs)}.</p>",
            calibration_plot([(b.predicted, b.observed, b.low, b.high) for b in bins]),
            "<table><tr><th>bin</th><th>rows</th><th>clicks</th><th>mean predicted</th><th>observed</th>"
            f"<th>95% interval</th></tr>{rows}</table>"]


def _importance_section(d: TrainingReportData) -> list[str]:
    if not d.importance:
        return []
    out = ["<h2>5. What moves the scores</h2>"]
    if d.importance_method == "weight x spread":
        out.append(f"<p>The {len(d.importance)} columns of the linear model with the largest |weight × spread|, the "
                   f"spread being the column's standard deviation over {num(d.importance_rows)} validation rows: how far "
                   "the column moves the score (the click logit) between typical rows. Positive (blue) raises the score, "
                   "negative (red) lowers it. Numeric history features are standardised.</p>")
        rows = [(f.feature, f.effect, f"{f.effect:+.3g}  (weight {f.weight:+.3g} × spread {f.spread:.3g})",
                 POSITIVE if f.effect >= 0 else NEGATIVE) for f in d.importance]
        out.append(hbars(rows, axis_label="weight × spread (logit)"))
    else:
        out.append(f"<p>Permutation importance of the tree model's inputs on {num(d.importance_rows)} validation rows: "
                   "how much the log loss grows when the column is shuffled (mean ± standard deviation over the "
                   "repeats). Near zero or below: the model does not rely on it.</p>")
        rows = [(f.feature, f.effect, f"{f.effect:.3g} ± {f.sd:.2g}", POSITIVE if f.effect >= 0 else NEGATIVE)
                for f in d.importance]
        out.append(hbars(rows, axis_label="increase in log loss when shuffled"))
    note = "Position is left out: scores put every banner at the same reference position."
    if d.position_weight is not None:
        note += (f" Its weight, {d.position_weight:+.3g} on log(position), is the position bias the model took out "
                 f"(the click odds scale as position^{d.position_weight:.3g}).")
    out.append(f"<p class='note'>{esc(note)}</p>")
    return out


def _offline_ab(ab: OfflineAB) -> list[str]:
    res = EvaluationResult.from_json(ab.evaluation)
    out = ["<h2>Offline A/B decision</h2>",
           f"<div class='decision {ab.decision}'><b>{esc(ab.decision.capitalize())}</b>: {esc(ab.reason)}</div>",
           f"<p>{num(res.n_requests)} logged requests; value = expected clicks per request on the first {res.slots} "
           "positions, with 95% bootstrap intervals.</p>"]
    if res.warnings:
        out.append("<div class='warn'><b>Warnings</b><ul>" + "".join(f"<li>{esc(w)}</li>" for w in res.warnings) + "</ul></div>")
    out.append(estimates_table(res))
    out.append(forest([(f"{n} · {e.upper()}", v[e]["value"], v[e]["ci_low"], v[e]["ci_high"], COLORS.get(e, "#333"))
                       for n, v in res.policies.items() for e in v]))
    if res.differences:
        out += ["<p>Paired differences against the first policy:</p>",
                forest([(f"{n} · {e.upper()}", v[e]["value"], v[e]["ci_low"], v[e]["ci_high"], COLORS.get(e, "#333"))
                        for n, v in res.differences.items() for e in v], zero=True)]
    return out


def _holdout(days) -> str:
    """The validation window in the unit that reads best ("the last 2 days", "the last 5 minutes")."""
    if not isinstance(days, (int, float)):
        return "-"
    for unit, size in (("day", 1.0), ("hour", 1 / 24), ("minute", 1 / 1440)):
        if days >= size:
            break
    else:
        unit, size = "second", 1 / 86400
    value = days / size
    text = f"{value:.0f}" if abs(value - round(value)) < 1e-6 else f"{value:.3g}"
    return f"the last {text} {unit}{'' if text == '1' else 's'}"
