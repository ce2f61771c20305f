"""The launch scenario: the office starts with no logs, its messenger clients update over
two weeks, and a daily retrain with its promotion gate takes over from the operators'
order when it can show that a model is better.

Each simulated day, the staff whose client has updated (a share growing from
``first_share`` on day 0 to everyone on the last day) load the banner space as the
simulator's traffic does; the service's policy ranks their eligible banners (the
promoted model's scores, or the operators' order before any model, both explored
epsilon-greedy as the service explores, with exact propensities), and clicks are drawn
from the ground truth. Every night `recommender retrain`'s workflow runs on all the logs
so far (training.retrain.retrain_from_logs: the candidate trained on all but the newest
``eval_days``, evaluated offline on them against the model in production, promoted only
when the doubly robust gain's interval is above zero with reliable weights).

Per day it reports the true expected clicks per request of what was served, and of the
operators' order alone (greedy, without exploration) for the same requests and the same
people's state, and the model that served. The model's features are computed from the
logs of the days before (the service would also see the same day's events).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from features.pipeline import history_from_logs
from recommender.contracts import ImpressionLog, load_banners, load_staff, write_banners
from recommender.domain import Banner
from recommender.exploration import epsilon_greedy
from recommender.ordering import greedy_keys
from recommender.progress import progress_bar
from recommender.ranker import CandidateRows
from recommender.timeutil import KST
from training.artifact import load_model
from training.registry import ModelRegistry
from training.retrain import PROMOTED, RetrainConfig, retrain_from_logs

from .banners import make_banners
from .run import DAY, REQUESTS_PER_DAY_P, SimulationConfig, _make_truth, _request_times, _write_staff
from .run import click_probability, show, static_parts

POLICY = "launch"


@dataclass
class LaunchConfig:
    staff: int = 20_000
    days: int = 14
    first_share: float = 0.05  # of the staff whose client has updated on day 0; everyone on the last day
    epsilon: float = 0.1  # the service's exploration
    slots: int = 3
    start: str = "2026-03-02"
    seed: int = 0
    retrain: RetrainConfig = field(default_factory=lambda: RetrainConfig(eval_days=2.0, bootstrap=200))


@dataclass
class LaunchDay:
    day: int
    audience_share: float
    requests: int
    model: str  # what served the day ("operators" before the first promotion)
    served_clicks_per_request: float  # true expected clicks@slots of what was served
    operators_clicks_per_request: float  # of the operators' order alone, for the same requests
    retrain: str = ""  # the night's decision and why


def launch_start(start: str) -> float:
    """The first day's midnight, KST, as a timestamp."""
    return datetime.fromisoformat(start).replace(tzinfo=KST).timestamp()


def audience_share(cfg: LaunchConfig, day: int) -> float:
    return min(1.0, cfg.first_share + (1.0 - cfg.first_share) * day / max(cfg.days - 1, 1))


class Province:
    """The simulated staff, banners and ground truth, with each person's views and clicks
    so far (what the truth's fatigue and completion read)."""

    def __init__(self, cfg: LaunchConfig, out: Path, banners: list[Banner] | None = None):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.t0 = launch_start(cfg.start)
        self.banners = banners if banners is not None else make_banners(self.t0, self.t0 + cfg.days * DAY)
        sim = SimulationConfig(staff=cfg.staff, days=cfg.days, start=cfg.start, seed=cfg.seed)
        self.truth = _make_truth(sim, self.rng, self.banners)
        _write_staff(out / "staff.csv", self.truth)
        write_banners(out / "banners.json", self.banners)
        self.staff = load_staff(out / "staff.csv")
        self.catalog = load_banners(out / "banners.json")
        n, nb = cfg.staff, len(self.banners)
        self.target_ok, self.base_logit = static_parts(self.truth, self.banners)
        self.starts = np.array([-np.inf if b.start is None else b.start for b in self.banners])
        self.ends = np.array([np.inf if b.end is None else b.end for b in self.banners])
        self.pinned = np.array([b.pinned for b in self.banners])
        self.priority = np.array([b.priority for b in self.banners])
        self.views = np.zeros((n, nb), dtype=np.int16)
        self.clicked_before = np.zeros((n, nb), dtype=bool)
        self.activity = np.clip(self.rng.beta(4, 2, n), 0, 1)
        self.update_order = self.rng.permutation(n)  # who gets the new client first


def _scores(model, province: Province, u: np.ndarray, ts: np.ndarray, elig: np.ndarray, history) -> np.ndarray:
    """The model's score of every eligible (request, banner); -inf elsewhere."""
    r, b = np.nonzero(elig)
    ids = province.truth.staff_ids
    profiles = {i: province.staff.get(ids[i]).attributes for i in np.unique(u).tolist()}
    rows = CandidateRows(r, [ids[u[i]] for i in r.tolist()], [profiles[u[i]] for i in r.tolist()],
                         [province.catalog.banners[j] for j in b.tolist()], ts[r])
    out = np.full(elig.shape, -np.inf)
    out[r, b] = model.score(rows, history)
    return out


def _rows(day: int, seq: int, u, ts, shown, prop, click, valid, province: Province) -> list[dict]:
    ids, bids = province.truth.staff_ids, [b.banner_id for b in province.banners]
    out = []
    for i in range(len(u)):
        stamp = datetime.fromtimestamp(int(ts[i]), KST).isoformat()
        for k in range(shown.shape[1]):
            if valid[i, k]:
                out.append({"request_id": f"l{day:03d}-{seq + i:08d}", "ts": stamp, "staff_id": ids[u[i]],
                            "banner_id": bids[shown[i, k]], "position": k + 1, "propensity": float(prop[i, k]),
                            "clicked": int(click[i, k]), "policy": POLICY})
    return out


def serve_day(province: Province, day: int, model, logs: list[ImpressionLog], out: Path) -> tuple[LaunchDay, Path]:
    """One day of traffic under the service's policy; writes the day's impressions."""
    cfg, rng = province.cfg, province.rng
    share = audience_share(cfg, day)
    updated = np.zeros(cfg.staff, dtype=bool)
    updated[province.update_order[:int(round(share * cfg.staff))]] = True
    active = np.flatnonzero(updated & (rng.random(cfg.staff) < province.activity))
    n_req = rng.choice(3, size=len(active), p=REQUESTS_PER_DAY_P) + 1
    times = _request_times(n_req, province.t0 + day * DAY, rng)
    history = history_from_logs(logs, province.catalog, model.encoder.config.half_life_days) if model else None
    rows: list[dict] = []
    served = operators = 0.0
    n_requests = 0
    zeros_key = greedy_keys(np.zeros(len(province.banners)), province.pinned, province.priority)
    for k in range(3):
        sel = n_req > k
        u, ts = active[sel], times[k][sel]
        elig = province.target_ok[u] & (province.starts[None, :] <= ts[:, None]) & (ts[:, None] < province.ends[None, :])
        keep = elig.any(axis=1)
        u, ts, elig = u[keep], ts[keep], elig[keep]
        if not len(u):
            continue
        keys = zeros_key if model is None else greedy_keys(_scores(model, province, u, ts, elig, history),
                                                             province.pinned, province.priority)
        ops, _, _ = epsilon_greedy(elig, zeros_key, province.pinned, 0.0, cfg.slots, rng)
        ops_valid = ops >= 0
        operators += float((click_probability(u, np.where(ops_valid, ops, 0), province.truth, province.base_logit,
                                              province.views, province.clicked_before) * ops_valid).sum())
        shown, prop, _ = epsilon_greedy(elig, keys, province.pinned, cfg.epsilon, cfg.slots, rng)
        valid = shown >= 0
        shown = np.where(valid, shown, 0)
        served += float((click_probability(u, shown, province.truth, province.base_logit, province.views,
                                           province.clicked_before) * valid).sum())
        click = show(u, shown, valid, province.truth, province.base_logit, province.views, province.clicked_before, rng)
        rows += _rows(day, n_requests, u, ts, shown, prop, click, valid, province)
        n_requests += len(u)
    path = out / f"day-{day:02d}.jsonl"
    rows.sort(key=lambda r: (r["ts"], r["request_id"], r["position"]))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    version = "operators" if model is None else model.version
    return LaunchDay(day, share, n_requests, version, served / max(n_requests, 1), operators / max(n_requests, 1)), path


def run_launch(out_dir: str | Path, cfg: LaunchConfig) -> list[LaunchDay]:
    """The launch scenario, day by day, into ``out_dir`` (logs, models, launch.json)."""
    from recommender.contracts import load_impressions

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    province = Province(cfg, out)
    registry = ModelRegistry(out / "models")
    model, logs, report = None, [], []
    bar = progress_bar(total=cfg.days, desc="launch", unit="day")
    for day in range(cfg.days):
        row, path = serve_day(province, day, model, logs, out)
        logs.append(load_impressions(path, catalog=province.catalog))
        result = retrain_from_logs(province.staff, province.catalog, ImpressionLog.concat(logs), [], registry,
                                   cfg.retrain, production=model.version if model else None)
        row.retrain = f"{result.decision}: {result.reason}"
        if result.decision == PROMOTED:
            registry.promote(result.candidate, cfg.retrain.arm)
            model = load_model(result.folder)
        report.append(row)
        bar.update(1)
    bar.close()
    (out / "launch.json").write_text(json.dumps([asdict(r) for r in report], indent=1), encoding="utf-8")
    return report
