"""The season: weeks of service from zero, no human action.

The office starts with no logs; its messenger clients update over the first
``growth_days``, so the audience grows from ``first_share`` to all staff; every week new
banners start (running two to four weeks) and some of the first ones end. The service
explores epsilon-greedy around what it serves, with exact propensities, and every night a
retrain runs on the last ``window_days`` of logs. Two loops are simulated on the same
staff, banners, ground truth and requests (who loads the banner space when):

- **gated**: the nightly `recommender retrain --promote` (training.retrain.retrain_from_logs):
  a candidate surely better offline is promoted to arm A; an undecided one (unreliable
  importance weights) is ramped in on arm B, its share stepping through ``ramp_steps``
  a day each, judged every hour by the service's guardrail (recommender.ramps.judge_ramp
  on the arms' clicks per request since the ramp began): stopped when surely worse, made
  A's model when it held its last step. A person's arm is a fixed uniform draw, as the
  service's salted hash. On ``corrupt_night`` the candidate is trained on logs whose
  clicks are shuffled among their rows (the evaluated days stay as logged).
- **always**: every night the newest model, trained on all the window's logs, is served
  the next day, without a gate.

Per day it reports the true expected clicks per request (first ``slots`` positions, from
the ground truth) of what was served, and, for the same requests and the same people's
state, of the operators' order alone and of the oracle (greedy on the true click
probability); the models that served; and the night's decision and the path that decided.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from features.pipeline import history_from_logs
from recommender.contracts import ImpressionLog, load_impressions
from recommender.domain import Banner
from recommender.exploration import epsilon_greedy
from recommender.ordering import greedy_keys
from recommender.progress import progress_bar
from recommender.ramps import DONE, STOPPED, judge_ramp, ramp_share
from recommender.sequential import ArmOutcome
from training.artifact import load_model
from training.registry import ModelRegistry
from training.retrain import PROMOTED, UNDECIDED, RetrainConfig, retrain_from_logs
from training.train import train

from .banners import make_banners, synthetic_templates
from .launch import LaunchConfig, Province, _rows, _scores, launch_start
from .run import DAY, REQUESTS_PER_DAY_P, _request_times, click_probability, show
from .groundtruth import sigmoid

GATED, ALWAYS = "gated", "always"
HOUR = 3600.0


@dataclass
class SeasonConfig:
    staff: int = 5_000
    weeks: int = 8
    growth_days: int = 14  # the audience reaches all staff after these days
    first_share: float = 0.05
    new_banners_per_week: int = 6
    epsilon: float = 0.1
    slots: int = 3
    start: str = "2026-03-02"
    seed: int = 0
    window_days: float = 28.0  # the logs each night's retrain reads
    ramp_steps: tuple[float, ...] = (0.1, 0.5)
    ramp_every_days: float = 1.0
    ramp_min_requests: int = 500
    ramp_alpha: float = 0.05
    corrupt_night: int | None = 24  # the night whose candidate learns from shuffled clicks (gated loop)
    retrain: RetrainConfig = field(default_factory=lambda: RetrainConfig(eval_days=2.0, bootstrap=100))

    @property
    def days(self) -> int:
        return 7 * self.weeks


@dataclass
class SeasonDay:
    day: int
    audience_share: float
    requests: int
    serving: str  # the models that served and their shares of the requests
    served: float  # true expected clicks per request of what was served
    operators: float  # of the operators' order alone, same requests
    oracle: float  # of the oracle, same requests
    night: str = ""  # the night's decision or action, and the path that decided
    path: str = ""  # offline, ramp, always, or "" (nothing changed)


def season_banners(t0: float, cfg: SeasonConfig) -> list[Banner]:
    """The first catalog (the templates, their windows inside the first two weeks; about half
    of those without an end end between week 3 and the season's end) and each later week's
    new banners (generated, starting that Monday, running 2 to 4 weeks)."""
    rng = np.random.default_rng([cfg.seed, 0x5EA])
    end_of_season = t0 + cfg.days * DAY
    out = []
    for b in make_banners(t0, t0 + 14 * DAY):
        end = t0 + 7 * DAY * int(rng.integers(min(3, cfg.weeks), cfg.weeks + 1))
        if b.end is None and not b.pinned and rng.random() < 0.5 and end > (b.start or t0) + DAY:
            b = replace(b, end=end)
        out.append(b)
    for w in range(1, cfg.weeks):
        start = t0 + 7 * DAY * w
        for bid, cat, title, tags, _, _, target, pinned, prio in synthetic_templates(cfg.new_banners_per_week,
                                                                                   cfg.seed * 100 + w):
            end = min(start + 7 * DAY * int(rng.integers(2, 5)), end_of_season)
            out.append(Banner(f"{bid}-w{w}", cat, title, start, end, {k: tuple(v) for k, v in target.items()},
                              pinned, prio, tuple(tags)))
    return out


class _Requests:
    """Who loads the banner space when, the same in both loops: each day's (person, time)
    in time order, drawn from the season's own generator."""

    def __init__(self, cfg: SeasonConfig, province: Province):
        self.cfg, self.province = cfg, province
        self.rng = np.random.default_rng([cfg.seed, 0x7E0])
        self.hash = self.rng.random(cfg.staff)  # each person's place in [0, 1): their arm

    def share(self, day: int) -> float:
        cfg = self.cfg
        return min(1.0, cfg.first_share + (1.0 - cfg.first_share) * day / max(cfg.growth_days - 1, 1))

    def day(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        cfg, p, rng = self.cfg, self.province, self.rng
        updated = np.zeros(cfg.staff, dtype=bool)
        updated[p.update_order[:int(round(self.share(day) * cfg.staff))]] = True
        active = np.flatnonzero(updated & (rng.random(cfg.staff) < p.activity))
        n_req = rng.choice(3, size=len(active), p=REQUESTS_PER_DAY_P) + 1
        times = _request_times(n_req, p.t0 + day * DAY, rng)
        u = np.concatenate([active[n_req > k] for k in range(3)])
        ts = np.concatenate([times[k][n_req > k] for k in range(3)])
        order = np.argsort(ts, kind="stable")
        return u[order], ts[order]


def _batches(u: np.ndarray, ts: np.ndarray, t_day: float):
    """Hour by hour, and within an hour each person at most once per batch."""
    hour = ((ts - t_day) // HOUR).astype(int)
    for h in np.unique(hour):
        idx = np.flatnonzero(hour == h)
        occurrence = _occurrence(u[idx])
        for k in range(int(occurrence.max()) + 1):
            yield int(h), idx[occurrence == k]


def _occurrence(x: np.ndarray) -> np.ndarray:
    """For each element, how many equal elements come before it (0 for the first)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    first = np.r_[True, xs[1:] != xs[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(xs)), 0))
    out = np.empty(len(x), dtype=int)
    out[order] = np.arange(len(xs)) - group_start
    return out


class _World:
    """One loop's people state, logs, registry and models."""

    def __init__(self, cfg: SeasonConfig, province: Province, out: Path, loop: str):
        self.cfg, self.p, self.out, self.loop = cfg, province, out, loop
        out.mkdir(parents=True, exist_ok=True)
        self.views = np.zeros_like(province.views)
        self.clicked_before = np.zeros_like(province.clicked_before)
        self.rng = np.random.default_rng([cfg.seed, 0xC11C, 0 if loop == GATED else 1])
        self.registry = ModelRegistry(out / "models")
        self.control = None  # arm A's model (None: the operators' order)
        self.candidate = None  # arm B's model while a ramp runs
        self.ramp: dict | None = None
        self.ramp_clicks: dict[str, dict[int, int]] = {"A": {}, "B": {}}
        self.logs: list[ImpressionLog] = []
        self.served_days: dict[str, int] = {}
        self.largest_share: dict[str, float] = {}  # each model's largest share of a day's requests
        self.corrupted: str | None = None  # the candidate trained on shuffled clicks

    def _keys(self, model, u, ts, elig, history):
        p = self.p
        if model is None:
            return np.broadcast_to(greedy_keys(np.zeros(len(p.banners)), p.pinned, p.priority), elig.shape)
        return greedy_keys(_scores(model, p, u, ts, elig, history), p.pinned, p.priority)

    def _expected(self, u, shown, valid) -> float:
        p = self.p
        return float((click_probability(u, np.where(valid, shown, 0), p.truth, p.base_logit, self.views,
                                        self.clicked_before) * valid).sum())

    def serve_day(self, day: int, u_all: np.ndarray, ts_all: np.ndarray, arm_hash: np.ndarray,
                  share: float) -> tuple[SeasonDay, str]:
        cfg, p = self.cfg, self.p
        t_day = p.t0 + day * DAY
        histories: dict[float, object] = {}  # the logs before today, by the features' half-life

        def history(model):
            half_life = model.encoder.config.half_life_days
            if half_life not in histories:
                histories[half_life] = history_from_logs(self.logs, p.catalog, half_life)
            return histories[half_life]
        zeros = greedy_keys(np.zeros(len(p.banners)), p.pinned, p.priority)
        rows: list[dict] = []
        served = operators = oracle = 0.0
        n = 0
        by_model: dict[str, int] = {}  # requests each model served today
        ramp_event = ""
        for hour, idx in _batches(u_all, ts_all, t_day):
            u, ts = u_all[idx], ts_all[idx]
            elig = p.target_ok[u] & (p.starts[None, :] <= ts[:, None]) & (ts[:, None] < p.ends[None, :])
            keep = elig.any(axis=1)
            u, ts, elig = u[keep], ts[keep], elig[keep]
            if not len(u):
                continue
            on_b = np.zeros(len(u), dtype=bool)
            if self.ramp is not None:
                on_b = arm_hash[u] < ramp_share(self.ramp, t_day + hour * HOUR)
            keys = np.empty(elig.shape)
            for model, sel in ((self.control, ~on_b), (self.candidate, on_b)):
                if sel.any():
                    keys[sel] = self._keys(model, u[sel], ts[sel], elig[sel], history(model) if model else None)
                    name = model.version if model is not None else "operators"
                    by_model[name] = by_model.get(name, 0) + int(sel.sum())
            ops, _, _ = epsilon_greedy(elig, zeros, p.pinned, 0.0, cfg.slots, self.rng)
            operators += self._expected(u, ops, ops >= 0)
            truth_p = sigmoid(p.base_logit[u] - p.truth.fatigue * np.log1p(self.views[u])
                              - p.truth.completion[None, :] * self.clicked_before[u])
            best, _, _ = epsilon_greedy(elig, greedy_keys(truth_p, p.pinned, p.priority), p.pinned, 0.0, cfg.slots,
                                        self.rng)
            oracle += self._expected(u, best, best >= 0)
            shown, prop, _ = epsilon_greedy(elig, keys, p.pinned, cfg.epsilon, cfg.slots, self.rng)
            valid = shown >= 0
            shown = np.where(valid, shown, 0)
            served += self._expected(u, shown, valid)
            click = show(u, shown, valid, p.truth, p.base_logit, self.views, self.clicked_before, self.rng)
            rows += _rows(day, n, u, ts, shown, prop, click, valid, p)
            n += len(u)
            if self.ramp is not None:
                per_request = click.sum(axis=1)
                for arm, sel in (("A", ~on_b), ("B", on_b)):
                    counts = self.ramp_clicks[arm]
                    for k, c in zip(*np.unique(per_request[sel], return_counts=True)):
                        counts[int(k)] = counts.get(int(k), 0) + int(c)
                ramp_event = self._check_ramp(t_day + (hour + 1) * HOUR) or ramp_event
        path = self.out / f"day-{day:02d}.jsonl"
        rows.sort(key=lambda r: (r["ts"], r["request_id"], r["position"]))
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        self.logs.append(load_impressions(path, catalog=p.catalog))
        for name, k in by_model.items():
            self.served_days[name] = self.served_days.get(name, 0) + 1
            self.largest_share[name] = max(self.largest_share.get(name, 0.0), k / max(n, 1))
        serving = ", ".join(f"{name} {k / max(n, 1):.0%}" for name, k in sorted(by_model.items(), key=lambda x: -x[1]))
        return SeasonDay(day, share, n, serving, served / max(n, 1), operators / max(n, 1), oracle / max(n, 1)), \
            ramp_event

    def _check_ramp(self, now: float) -> str:
        cfg = self.cfg
        new = ArmOutcome.from_counts(self.ramp_clicks["B"])
        control = ArmOutcome.from_counts(self.ramp_clicks["A"])
        verdict = judge_ramp(self.ramp, new, control, now, cfg.ramp_alpha, cfg.ramp_min_requests)
        if verdict.status == STOPPED:
            share = ramp_share(self.ramp, now - HOUR)
            event = (f"ramp of {self.candidate.version} stopped at {share:.0%}: {new.mean:.4f} vs {control.mean:.4f} "
                     f"clicks per request, interval [{verdict.low:+.4f}, {verdict.high:+.4f}]")
            self.ramp, self.candidate = None, None
            return event
        if verdict.status == DONE:
            event = (f"ramp of {self.candidate.version} done: {new.mean:.4f} vs {control.mean:.4f} clicks per "
                     f"request after {new.n:,} and {control.n:,} requests; it now serves A")
            self.control, self.ramp, self.candidate = self.candidate, None, None
            return event
        return ""

    def _window(self) -> ImpressionLog:
        log = ImpressionLog.concat(self.logs)
        return log.split(float(log.ts.max()) - self.cfg.window_days * DAY)[1]

    def night(self, day: int) -> tuple[str, str]:
        """The night's retrain: its outcome in one sentence and the path that decided."""
        cfg, p = self.cfg, self.p
        log = self._window()
        if self.loop == ALWAYS:
            if log.n_requests == 0 or float(log.ts.max() - log.ts.min()) <= cfg.retrain.train.holdout_days * DAY:
                return "too few logs to train", ""
            trained = train(p.staff, p.catalog, log, self.registry.root, cfg.retrain.train)
            self.control = load_model(trained.path)
            return f"serves {trained.path.name}", ALWAYS
        if day == cfg.corrupt_night:
            log = _corrupt_training_part(log, cfg.retrain.eval_days, np.random.default_rng([cfg.seed, day]))
        production = self.control.version if self.control is not None else None
        result = retrain_from_logs(p.staff, p.catalog, log, [], self.registry, cfg.retrain, production=production)
        corrupt = " (trained on shuffled clicks)" if day == cfg.corrupt_night else ""
        if corrupt:
            self.corrupted = result.candidate
        if result.decision == PROMOTED:
            self.control, self.ramp, self.candidate = load_model(result.folder), None, None
            self.ramp_clicks = {"A": {}, "B": {}}
            return f"promoted {result.candidate}{corrupt}: {result.reason}", "offline"
        if result.decision == UNDECIDED and self.ramp is None:
            self.candidate = load_model(result.folder)
            self.ramp = {"steps": list(cfg.ramp_steps), "every_s": cfg.ramp_every_days * DAY,
                         "started": p.t0 + (day + 1) * DAY, "status": "ramping"}
            self.ramp_clicks = {"A": {}, "B": {}}
            return f"ramping {result.candidate}{corrupt}: {result.reason}", "ramp"
        if result.decision == UNDECIDED:
            return f"kept{corrupt}: undecided, and a ramp still runs", ""
        return f"{result.decision}{corrupt}: {result.reason}", "offline" if result.candidate else ""


def _corrupt_training_part(log: ImpressionLog, eval_days: float, rng: np.random.Generator) -> ImpressionLog:
    """The log with the clicks of all but its newest ``eval_days`` shuffled among those rows."""
    cut = float(log.ts.max()) - eval_days * DAY
    past = np.flatnonzero(log.ts < cut)
    clicked = log.clicked.copy()
    clicked[past] = clicked[rng.permutation(past)]
    return replace(log, clicked=clicked)


def run_season(out_dir: str | Path, cfg: SeasonConfig, loops: tuple[str, ...] = (GATED, ALWAYS)) -> dict:
    """Both loops, day by day, into ``out_dir``; returns {loop: [SeasonDay, ...]} and each
    loop's days served per model (also written to season.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = launch_start(cfg.start)
    launch = LaunchConfig(staff=cfg.staff, days=cfg.days, first_share=cfg.first_share, epsilon=cfg.epsilon,
                          slots=cfg.slots, start=cfg.start, seed=cfg.seed)
    province = Province(launch, out, season_banners(t0, cfg))
    worlds = {loop: _World(cfg, province, out / loop, loop) for loop in loops}
    requests = _Requests(cfg, province)
    report: dict[str, list[SeasonDay]] = {loop: [] for loop in loops}
    bar = progress_bar(total=cfg.days, desc="season", unit="day")
    for day in range(cfg.days):
        u, ts = requests.day(day)
        for loop, world in worlds.items():
            row, ramp_event = world.serve_day(day, u, ts, requests.hash, requests.share(day))
            night, path = world.night(day)
            row.night = "; ".join(x for x in (ramp_event, night) if x)
            row.path = "ramp" if ramp_event and not path else path
            report[loop].append(row)
        bar.update(1)
    bar.close()
    summary = {"config": {k: v for k, v in asdict(cfg).items() if k != "retrain"},
               "days": {loop: [asdict(r) for r in rows] for loop, rows in report.items()},
               "served_days": {loop: w.served_days for loop, w in worlds.items()},
               "largest_share": {loop: w.largest_share for loop, w in worlds.items()},
               "corrupted": {loop: w.corrupted for loop, w in worlds.items()}}
    (out / "season.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    return summary
