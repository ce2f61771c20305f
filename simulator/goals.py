"""The delivery-goal scenario: the same simulated days served three ways, side by side.

A province (the launch scenario's staff, banners and ground truth, everyone on the new
client) is served ``warmup_days`` under the operators' order with exploration; a click
model is fitted on those logs. Then two banners get goals for the next ``goal_days``:

- a policy banner must reach ``reach_share`` (80%) of its audience (the staff it targets);
- a survey must get ``clicks_factor`` times the clicks it gets with no goal.

The goal days are served three ways, from the same state and with the same random draws
of traffic: (a) **no goal**: the model's greedy order with epsilon-greedy exploration, as
the service serves; (b) **pinning**: both banners pinned (first) for everyone over the
goal days; (c) **pacing**: the service's pacing (recommender.goals: the same tracker and
boost the service uses), the boost added to the model's scores before the greedy order.
Requests are served in time order, in chunks of ``chunk`` requests, with the delivery
counts updated between chunks (the service updates them at every request).

Reported per way: each goal's delivery and whether it was met, and the true expected
clicks of all banners over the goal days (from the ground truth).
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from features.pipeline import history_from_logs
from recommender.contracts import ImpressionLog, load_impressions
from recommender.domain import DeliveryGoal
from recommender.exploration import epsilon_greedy
from recommender.goals import DeliveryTracker
from recommender.ordering import greedy_keys
from recommender.progress import progress_bar
from training.fitting import fit_click_model

from .launch import LaunchConfig, Province, _rows, _scores, serve_day
from .run import DAY, REQUESTS_PER_DAY_P, _request_times, click_probability, show

WAYS = ("no goal", "pinning", "pacing")


@dataclass
class GoalsConfig:
    staff: int = 20_000
    warmup_days: int = 3
    goal_days: int = 5
    reach_banner: str = "b-policy-03"
    reach_share: float = 0.8
    clicks_banner: str = "b-survey-01"
    clicks_factor: float = 1.5
    epsilon: float = 0.1
    slots: int = 3
    chunk: int = 500
    start: str = "2026-03-02"
    seed: int = 0


@dataclass
class WayResult:
    way: str
    reach: int  # distinct staff who had the reach banner in the shown slots
    reach_target: int
    clicks: int  # clicks on the clicks banner
    clicks_target: int
    expected_clicks: float  # true expected clicks of all banners over the goal days
    requests: int
    goals_met: dict = field(default_factory=dict)


def _serve_goal_day(p: Province, day: int, model, logs: list[ImpressionLog], way: str, goal_banners: list,
                    tracker: DeliveryTracker, out: Path, cfg: GoalsConfig) -> tuple[float, int, Path]:
    """One goal day served ``way``; the expected clicks, the requests and the day's log."""
    rng = p.rng
    n = cfg.staff
    active = np.flatnonzero(rng.random(n) < p.activity)
    n_req = rng.choice(3, size=len(active), p=REQUESTS_PER_DAY_P) + 1
    times = _request_times(n_req, p.t0 + day * DAY, rng)
    u_all = np.concatenate([active[n_req > k] for k in range(3)])
    ts_all = np.concatenate([times[k][n_req > k] for k in range(3)])
    order = np.argsort(ts_all, kind="stable")
    u_all, ts_all = u_all[order], ts_all[order]
    history = history_from_logs(logs, p.catalog, model.encoder.config.half_life_days)
    index = {b.banner_id: i for i, b in enumerate(p.banners)}
    pinned, priority = p.pinned.copy(), p.priority.copy()
    if way == "pinning":
        for b in goal_banners:
            pinned[index[b.banner_id]] = True
            priority[index[b.banner_id]] = 100
    ids, bids = p.truth.staff_ids, [b.banner_id for b in p.banners]
    expected, n_requests, rows = 0.0, 0, []
    for lo in range(0, len(u_all), cfg.chunk):
        u, ts = u_all[lo:lo + cfg.chunk], ts_all[lo:lo + cfg.chunk]
        elig = p.target_ok[u] & (p.starts[None, :] <= ts[:, None]) & (ts[:, None] < p.ends[None, :])
        keep = elig.any(axis=1)
        u, ts, elig = u[keep], ts[keep], elig[keep]
        if not len(u):
            continue
        scores = _scores(model, p, u, ts, elig, history)
        if way == "pacing":
            for i in range(len(u)):
                boost = tracker.boosts(ids[u[i]], goal_banners, float(ts[i]))
                if boost is not None:
                    for b, v in zip(goal_banners, boost.tolist()):
                        scores[i, index[b.banner_id]] += v
        keys = greedy_keys(scores, pinned, priority)
        shown, prop, _ = epsilon_greedy(elig, keys, pinned, cfg.epsilon, cfg.slots, rng)
        valid = shown >= 0
        shown = np.where(valid, shown, 0)
        expected += float((click_probability(u, shown, p.truth, p.base_logit, p.views, p.clicked_before) * valid).sum())
        click = show(u, shown, valid, p.truth, p.base_logit, p.views, p.clicked_before, rng)
        for i, k in zip(*np.nonzero(valid)):
            staff, banner, t = ids[u[i]], bids[shown[i, k]], float(ts[i])
            tracker.add_impression(staff, banner, t)
            if click[i, k]:
                tracker.add_click(staff, banner, t)
        rows += _rows(day, n_requests, u, ts, shown, prop, click, valid, p)
        n_requests += len(u)
    path = out / f"{way.replace(' ', '-')}-day-{day:02d}.jsonl"
    rows.sort(key=lambda r: (r["ts"], r["request_id"], r["position"]))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return expected, n_requests, path


def _serve_way(start: Province, model, logs: list[ImpressionLog], way: str, goal_banners: list, cfg: GoalsConfig,
               out: Path) -> tuple[DeliveryTracker, float, int]:
    p = copy.deepcopy(start)  # the same state and random draws for every way
    tracker = DeliveryTracker()
    tracker.set_goals(goal_banners)
    logs = list(logs)
    expected, requests = 0.0, 0
    for day in range(cfg.warmup_days, cfg.warmup_days + cfg.goal_days):
        e, n, path = _serve_goal_day(p, day, model, logs, way, goal_banners, tracker, out, cfg)
        expected += e
        requests += n
        logs.append(load_impressions(path, catalog=p.catalog))
    return tracker, expected, requests


def run_goals(out_dir: str | Path, cfg: GoalsConfig) -> list[WayResult]:
    """The scenario into ``out_dir`` (logs, goals.json); one result per way."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    launch = LaunchConfig(staff=cfg.staff, days=cfg.warmup_days + cfg.goal_days, first_share=1.0,
                          epsilon=cfg.epsilon, slots=cfg.slots, start=cfg.start, seed=cfg.seed)
    province = Province(launch, out)
    bar = progress_bar(total=cfg.warmup_days + 3 * cfg.goal_days, desc="goals", unit="day")
    logs = []
    for day in range(cfg.warmup_days):
        _, path = serve_day(province, day, None, logs, out)
        logs.append(load_impressions(path, catalog=province.catalog))
        bar.update(1)
    model = fit_click_model(province.staff, province.catalog, ImpressionLog.concat(logs))
    goal_start = province.t0 + cfg.warmup_days * DAY
    by = goal_start + cfg.goal_days * DAY
    index = {b.banner_id: i for i, b in enumerate(province.banners)}
    audience = int(province.target_ok[:, index[cfg.reach_banner]].sum())
    reach_target = int(np.ceil(cfg.reach_share * audience))

    def goals(clicks_target: int) -> list:
        return [replace(province.banners[index[cfg.reach_banner]], start=goal_start,
                        goal=DeliveryGoal("reach", reach_target, by)),
                replace(province.banners[index[cfg.clicks_banner]], start=goal_start,
                        goal=DeliveryGoal("clicks", max(clicks_target, 1), by))]

    results = []
    # no goal first: the clicks goal is a multiple of what the survey gets without one
    tracker, expected, requests = _serve_way(province, model, logs, "no goal", goals(10**9), cfg, out)
    clicks_target = int(np.ceil(cfg.clicks_factor * tracker.delivered(cfg.clicks_banner)))
    bar.update(cfg.goal_days)
    ways = {"no goal": (tracker, expected, requests)}
    for way in ("pinning", "pacing"):
        ways[way] = _serve_way(province, model, logs, way, goals(clicks_target), cfg, out)
        bar.update(cfg.goal_days)
    bar.close()
    for way in WAYS:
        tracker, expected, requests = ways[way]
        reach, clicks = tracker.delivered(cfg.reach_banner), tracker.delivered(cfg.clicks_banner)
        results.append(WayResult(way, reach, reach_target, clicks, clicks_target, expected, requests,
                                 {"reach": reach >= reach_target, "clicks": clicks >= clicks_target}))
    (out / "goals.json").write_text(json.dumps({"config": asdict(cfg), "audience": audience,
                                                "results": [asdict(r) for r in results]}, indent=1), encoding="utf-8")
    return results


def table(results: list[WayResult]) -> str:
    base = results[0].expected_clicks
    lines = ["| way | reach goal | clicks goal | true expected clicks, all banners | vs no goal |",
             "|---|---|---|---|---|"]
    for r in results:
        reach = f"{r.reach:,} of {r.reach_target:,} ({'met' if r.goals_met['reach'] else 'not met'})"
        clicks = f"{r.clicks:,} of {r.clicks_target:,} ({'met' if r.goals_met['clicks'] else 'not met'})"
        lines.append(f"| {r.way} | {reach} | {clicks} | {r.expected_clicks:,.0f} | "
                     f"{100 * (r.expected_clicks / base - 1):+.2f}% |")
    return "\n".join(lines)
