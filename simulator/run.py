"""`recommender simulate`: build a province, run its traffic under a logging policy, write
staff.csv, banners.json, impressions.jsonl and the ground truth (truth.npz, truth.json)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from features.definition import popularity
from recommender.caps import ExposureLedger, any_caps
from recommender.contracts.banners import write_banners
from recommender.domain import CATEGORIES, Banner, FrequencyCap
from recommender.exploration import epsilon_greedy
from recommender.ordering import greedy_keys
from recommender.progress import progress_bar
from recommender.timeutil import KST

from .banners import make_banners
from .groundtruth import GroundTruth, sigmoid
from .outcomes import draw_outcomes, outcome_rng, outcome_truth, with_outcome_rules
from .population import LEVELS, REGIONS, ROLES, sample_population

DAY = 86400.0
REQUESTS_PER_DAY_P = (0.45, 0.35, 0.20)  # 1, 2 or 3 loads per active person per day


@dataclass
class SimulationConfig:
    staff: int = 180_000
    days: int = 14
    active_share: float = 2 / 3
    slots: int = 3
    logging: str = "epsilon-greedy"  # or "uniform"
    epsilon: float = 0.2
    start: str = "2026-03-02"  # a Monday, KST
    seed: int = 0
    default_cap: FrequencyCap | None = None  # the logging policy leaves capped banners out, as the service does
    # the world (SETTINGS names useful combinations):
    personal_scale: float = 1.0  # multiplies the spread of the hidden per-person interests and tendency
    banners: int = 30  # 30: the hand-written catalog; fewer: a subset; more: generated ones added
    base_logit: float = -3.0  # the click model's base (sets the click rate)
    # effects beyond one attribute x category or banner: role x school level x category,
    # role and school level x each tag, targeting x category and role / level x targeting,
    # with this spread (0: none, the default world)
    layered: float = 0.0
    outcomes: bool = False  # clicks on surveys and events may end in an outcome (simulator.outcomes)


# Named worlds to check a design on more than one: each fixes the three world knobs.
SETTINGS: dict[str, dict[str, float | int]] = {
    "default": {"personal_scale": 1.0, "banners": 30, "base_logit": -3.0},
    "structured": {"personal_scale": 0.5, "banners": 20, "base_logit": -2.5},
    "personal": {"personal_scale": 1.8, "banners": 50, "base_logit": -3.0},
    "many-banners": {"personal_scale": 1.0, "banners": 100, "base_logit": -4.0},
    "layered": {"personal_scale": 1.0, "banners": 30, "base_logit": -3.0, "layered": 1.0},
}


def setting_config(name: str, **overrides) -> SimulationConfig:
    """A SimulationConfig of the named setting (SETTINGS), with any field overridden."""
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r} (one of {', '.join(SETTINGS)})")
    return SimulationConfig(**{**SETTINGS[name], **overrides})


@dataclass
class SimulationSummary:
    config: dict
    staff: int
    banners: int
    requests: int
    impressions: int
    clicks: int
    outcomes: int = 0
    ctr_by_position: dict = field(default_factory=dict)
    ctr_by_category: dict = field(default_factory=dict)
    impressions_by_category: dict = field(default_factory=dict)
    hidden_variance_share: float = 0.0
    files: dict = field(default_factory=dict)

    def table(self) -> str:
        lines = [
            f"staff        {self.staff:>12,}",
            f"banners      {self.banners:>12,}",
            f"requests     {self.requests:>12,}",
            f"impressions  {self.impressions:>12,}",
            f"clicks       {self.clicks:>12,}   (click rate {self.clicks / max(self.impressions, 1):.2%})",
            "",
            "click rate by position:",
        ]
        if self.config.get("outcomes"):
            lines.insert(-2, f"outcomes     {self.outcomes:>12,}   ({self.outcomes / max(self.clicks, 1):.1%} of clicks)")
        for k, v in self.ctr_by_position.items():
            lines.append(f"  {k:<10} {v:7.2%}")
        lines.append("click rate by category:   impressions   click rate")
        for k, v in self.ctr_by_category.items():
            lines.append(f"  {k:<10} {self.impressions_by_category[k]:>24,}   {v:7.2%}")
        lines.append(f"hidden per-person share of attractiveness variance: {self.hidden_variance_share:.0%}")
        return "\n".join(lines)


def _make_truth(cfg: SimulationConfig, rng: np.random.Generator, banners: list[Banner]) -> GroundTruth:
    n = cfg.staff
    role, level, region = sample_population(n, rng)
    nb, nc = len(banners), len(CATEGORIES)
    cat = np.array([CATEGORIES.index(b.category) for b in banners])
    # Structured taste by role and level (who reads policy, who joins events) plus noise.
    role_cat = rng.normal(0, 0.35, (len(ROLES), nc))
    role_cat[ROLES.index("principal"), CATEGORIES.index("policy")] += 0.9
    role_cat[ROLES.index("vice_principal"), CATEGORIES.index("policy")] += 0.7
    role_cat[ROLES.index("admin_officer"), CATEGORIES.index("policy")] += 0.5
    role_cat[ROLES.index("admin_officer"), CATEGORIES.index("event")] -= 0.5
    role_cat[ROLES.index("teacher"), CATEGORIES.index("info")] += 0.5
    role_cat[ROLES.index("support_staff"), CATEGORIES.index("event")] += 0.5
    role_cat[ROLES.index("education_specialist"), CATEGORIES.index("survey")] += 0.4
    level_cat = rng.normal(0, 0.3, (len(LEVELS), nc))
    level_cat[LEVELS.index("kindergarten"), CATEGORIES.index("event")] += 0.4
    level_cat[LEVELS.index("office"), CATEGORIES.index("policy")] += 0.4
    completion = np.where(np.isin(cat, [CATEGORIES.index("survey"), CATEGORIES.index("event")]), 3.5, 1.0)
    group_banner = _layered_effects(cfg, banners, cat) if cfg.layered > 0 else None
    return GroundTruth(
        staff_ids=[f"s-{i:06d}" for i in range(n)],
        banner_ids=[b.banner_id for b in banners],
        role=role, level=level, region=region, banner_cat=cat,
        base=float(cfg.base_logit),
        quality=rng.normal(0, 0.5, nb),
        role_cat=role_cat, level_cat=level_cat,
        region_cat=rng.normal(0, 0.2, (len(REGIONS), nc)),
        role_banner=rng.normal(0, 0.3, (len(ROLES), nb)),
        level_banner=rng.normal(0, 0.3, (len(LEVELS), nb)),
        region_banner=rng.normal(0, 0.2, (len(REGIONS), nb)),
        interest=rng.normal(0, 0.8 * cfg.personal_scale, (n, nc)),
        tendency=rng.normal(0, 0.5 * cfg.personal_scale, n),
        fatigue=0.3,
        completion=completion,
        exam_head=np.array([1.0, 0.6, 0.35]),
        exam_decay=0.7,
        group_banner=group_banner,
    )


def _layered_effects(cfg: SimulationConfig, banners: list[Banner], cat: np.ndarray) -> np.ndarray:
    """The role x school level x banner logit of the effects beyond single attributes: a
    pair's taste for a category, each role's and level's taste for each tag, and the
    taste of each role and level for targeted banners, by category. Drawn from a
    generator of their own, so the rest of the world is the default world's."""
    rng = np.random.default_rng([cfg.seed, 1729])
    scale = cfg.layered
    nr, nl, nc = len(ROLES), len(LEVELS), len(CATEGORIES)
    tags = sorted({t for b in banners for t in b.tags})
    role_tag = rng.normal(0, 0.3 * scale, (nr, len(tags)))
    level_tag = rng.normal(0, 0.3 * scale, (nl, len(tags)))
    pair_cat = rng.normal(0, 0.4 * scale, (nr, nl, nc))
    targeted_cat = rng.normal(0, 0.4 * scale, nc)
    role_targeted = rng.normal(0, 0.3 * scale, nr)
    level_targeted = rng.normal(0, 0.3 * scale, nl)
    out = pair_cat[:, :, cat].copy()
    for j, b in enumerate(banners):
        idx = [tags.index(t) for t in b.tags]
        out[:, :, j] += role_tag[:, idx].sum(axis=1)[:, None] + level_tag[:, idx].sum(axis=1)[None, :]
        if b.is_targeted():
            out[:, :, j] += targeted_cat[cat[j]] + role_targeted[:, None] + level_targeted[None, :]
    return out


def _request_times(n_req: np.ndarray, day_start: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Integer epoch seconds of each person's 1st, 2nd, 3rd load of the day (KST hours):
    most first loads fall in the half hour before classes start; later loads spread out."""
    n = len(n_req)
    morning = rng.random(n) < 0.65
    first_h = np.where(morning, rng.normal(8.6, 0.45, n), rng.uniform(9.0, 17.0, n))
    first_h = np.clip(first_h, 6.5, 18.0)
    times = [day_start + np.floor(first_h * 3600)]
    for _ in range(2):
        gap = np.floor(rng.exponential(2.5 * 3600, n)) + 60
        times.append(np.minimum(times[-1] + gap, day_start + DAY - 10 + len(times)))
    return times


def day_schedule(activity: np.ndarray, day_start: float, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Who is active on a day (each person with their ``activity`` probability), how many
    times each loads the banner space (1 to 3) and when (``_request_times``)."""
    active = np.flatnonzero(rng.random(len(activity)) < activity)
    n_req = rng.choice(3, size=len(active), p=REQUESTS_PER_DAY_P) + 1
    return active, n_req, _request_times(n_req, day_start, rng)


def static_parts(truth: GroundTruth, banners: list[Banner]) -> tuple[np.ndarray, np.ndarray]:
    """What no traffic changes: whether each person matches each banner's target (n, nb),
    and each person's logit of each banner before views and clicks (n, nb)."""
    n, nb = len(truth.staff_ids), len(banners)
    attrs = {"role": np.array(ROLES)[truth.role], "school_level": np.array(LEVELS)[truth.level],
             "region": np.array(REGIONS)[truth.region]}
    target_ok = np.ones((n, nb), dtype=bool)
    for j, b in enumerate(banners):
        for name, allowed in b.target.items():
            if allowed:
                target_ok[:, j] &= np.isin(attrs[name], allowed)
    base_logit = np.empty((n, nb), dtype=np.float32)
    for j in range(nb):
        bj = np.full(n, j)
        base_logit[:, j] = truth.observable_logit(np.arange(n), bj) + truth.hidden_logit(np.arange(n), bj)
    return target_ok, base_logit


def click_probability(u, shown, truth: GroundTruth, base_logit, views, clicked_before) -> np.ndarray:
    """P(click) of each shown (request, position): the ground truth with the person's views
    and clicks of the banner so far (``base_logit``: their static logit per banner)."""
    v = views[u[:, None], shown]
    cb = clicked_before[u[:, None], shown]
    logit = base_logit[u[:, None], shown] - truth.fatigue * np.log1p(v) - truth.completion[shown] * cb
    return truth.examination(np.arange(1, shown.shape[1] + 1))[None, :] * sigmoid(logit)


def show(u, shown, valid, truth: GroundTruth, base_logit, views, clicked_before, rng) -> np.ndarray:
    """Draw the clicks of a batch of rankings (each person at most once in it) and count the
    views and clicks into the people's state; returns the clicks (m, K)."""
    p_click = click_probability(u, shown, truth, base_logit, views, clicked_before)
    click = (rng.random(shown.shape) < p_click) & valid
    for j in range(shown.shape[1]):
        vj = valid[:, j]
        views[u[vj], shown[vj, j]] += 1
        cj = click[:, j]
        clicked_before[u[cj], shown[cj, j]] = True
    return click


def simulate(out_dir: str | Path, cfg: SimulationConfig) -> SimulationSummary:
    """Generate the province and its logs into ``out_dir``; return a summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.logging not in ("uniform", "epsilon-greedy"):
        raise ValueError(f"unknown logging policy {cfg.logging!r} (uniform or epsilon-greedy)")
    eps = 1.0 if cfg.logging == "uniform" else float(cfg.epsilon)
    if not 0.0 <= eps <= 1.0:
        raise ValueError("epsilon must be in [0, 1]")
    if cfg.banners < 1 or cfg.personal_scale < 0:
        raise ValueError("banners must be at least 1 and personal_scale at least 0")
    rng = np.random.default_rng(cfg.seed)
    start_dt = datetime.fromisoformat(cfg.start).replace(tzinfo=KST)
    t0 = start_dt.timestamp()
    banners = make_banners(t0, t0 + cfg.days * DAY, cfg.banners, cfg.seed)
    truth = _make_truth(cfg, rng, banners)
    if cfg.outcomes:
        banners = with_outcome_rules(banners)
        truth = dataclasses.replace(truth, **outcome_truth(cfg.seed, cfg.staff))
        completed = np.zeros((cfg.staff, len(banners)), dtype=bool)
        hides = np.array([b.outcome is not None and b.outcome.after_completion == "hide" for b in banners])
        orng = outcome_rng(cfg.seed)
    n, nb, K = cfg.staff, len(banners), cfg.slots

    _write_staff(out / "staff.csv", truth)
    write_banners(out / "banners.json", banners)
    truth.save(out)

    target_ok, base_logit = static_parts(truth, banners)
    starts = np.array([-np.inf if b.start is None else b.start for b in banners])
    ends = np.array([np.inf if b.end is None else b.end for b in banners])
    pinned = np.array([b.pinned for b in banners])
    priority = np.array([b.priority for b in banners])

    views = np.zeros((n, nb), dtype=np.int16)
    clicked_before = np.zeros((n, nb), dtype=bool)
    pop_impr = np.zeros(nb)
    pop_click = np.zeros(nb)
    activity = np.clip(rng.beta(4, 2, n) * cfg.active_share / (4 / 6), 0, 1)  # mean = active_share

    stats_pos_imp = np.zeros(K)
    stats_pos_clk = np.zeros(K)
    stats_cat_imp = np.zeros(len(CATEGORIES))
    stats_cat_clk = np.zeros(len(CATEGORIES))
    n_requests = 0
    n_outcomes = 0
    seq = 0
    cat = truth.banner_cat
    ids = np.array(truth.staff_ids)
    bids = [b.banner_id for b in banners]
    policy_name = "uniform" if cfg.logging == "uniform" else f"epsilon-greedy-{eps:g}"

    exposure = ExposureLedger() if any_caps(banners, cfg.default_cap) else None
    bar = progress_bar(total=cfg.days, desc="simulate", unit="day")
    with open(out / "impressions.jsonl", "w", encoding="utf-8") as f:
        for d in range(cfg.days):
            day_start = t0 + d * DAY
            # Greedy order of the day: popularity so far, shrunk towards a 5% click rate, then priority.
            gkey = greedy_keys(popularity(pop_click, pop_impr, 0.05, 10.0), pinned, priority)
            active, n_req, times = day_schedule(activity, day_start, rng)
            day_lines: list[tuple[float, str]] = []
            for k in range(3):
                sel = n_req > k
                u = active[sel]
                ts = times[k][sel]
                m = len(u)
                if m == 0:
                    continue
                elig = target_ok[u] & (starts[None, :] <= ts[:, None]) & (ts[:, None] < ends[None, :])
                if exposure is not None:
                    elig &= ~_capped(exposure, ids[u], ts, elig, banners, cfg.default_cap)
                if cfg.outcomes:  # the service leaves out what a person completed, where the catalog hides it
                    elig &= ~(completed[u] & hides[None, :])
                keep = elig.any(axis=1)
                u, ts, elig = u[keep], ts[keep], elig[keep]
                m = len(u)
                shown, prop, _ = epsilon_greedy(elig, gkey, pinned, eps, K, rng)
                valid = shown >= 0
                shown = np.where(valid, shown, 0)
                click = show(u, shown, valid, truth, base_logit, views, clicked_before, rng)
                outcome = draw_outcomes(truth, u, shown, click, completed, orng) if cfg.outcomes else None
                n_outcomes += 0 if outcome is None else int(outcome.sum())
                if exposure is not None:
                    _record(exposure, ids[u], ts, shown, valid, click, bids)
                np.add.at(pop_impr, shown[valid], 1)
                np.add.at(pop_click, shown[click], 1)
                stats_pos_imp += valid.sum(axis=0)
                stats_pos_clk += click.sum(axis=0)
                np.add.at(stats_cat_imp, cat[shown[valid]], 1)
                np.add.at(stats_cat_clk, cat[shown[click]], 1)
                n_requests += m
                day_lines.extend(_format_rows(seq, d, ts, ids[u], shown, prop, click, valid, bids, policy_name, outcome))
                seq += m
            day_lines.sort(key=lambda x: x[0])
            f.writelines(line for _, line in day_lines)
            bar.update(1)
    bar.close()

    total_imp = int(stats_pos_imp.sum())
    summary = SimulationSummary(
        config=asdict(cfg),
        staff=n,
        banners=nb,
        requests=n_requests,
        impressions=total_imp,
        clicks=int(stats_pos_clk.sum()),
        outcomes=n_outcomes,
        ctr_by_position={f"position {k + 1}": float(stats_pos_clk[k] / max(stats_pos_imp[k], 1)) for k in range(K)},
        ctr_by_category={c: float(stats_cat_clk[i] / max(stats_cat_imp[i], 1)) for i, c in enumerate(CATEGORIES)},
        impressions_by_category={c: int(stats_cat_imp[i]) for i, c in enumerate(CATEGORIES)},
        hidden_variance_share=truth.hidden_variance_share(),
        files={name: str(out / name) for name in ("staff.csv", "banners.json", "impressions.jsonl", "truth.npz", "truth.json")},
    )
    (out / "summary.json").write_text(json.dumps(asdict(summary), ensure_ascii=False, indent=1), encoding="utf-8")
    return summary


def _capped(exposure: ExposureLedger, staff_ids: np.ndarray, ts: np.ndarray, elig: np.ndarray,
            banners: list[Banner], default: FrequencyCap | None) -> np.ndarray:
    """(m, n_banners): the eligible banners each request's person reached the cap of."""
    out = np.zeros(elig.shape, dtype=bool)
    for i in range(len(ts)):
        row = np.flatnonzero(elig[i])
        capped = exposure.capped(str(staff_ids[i]), [banners[j] for j in row], float(ts[i]), default)
        if capped:
            out[i, [j for j in row if banners[j].banner_id in capped]] = True
    return out


def _record(exposure: ExposureLedger, staff_ids: np.ndarray, ts: np.ndarray, shown: np.ndarray, valid: np.ndarray,
            click: np.ndarray, bids: list[str]) -> None:
    for i, k in zip(*np.nonzero(valid)):
        staff, banner, t = str(staff_ids[i]), bids[shown[i, k]], float(ts[i])
        exposure.add_impression(staff, banner, t)
        if click[i, k]:
            exposure.add_click(staff, banner, t)


def _write_staff(path: Path, truth: GroundTruth) -> None:
    roles, levels, regions = np.array(ROLES), np.array(LEVELS), np.array(REGIONS)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("staff_id,role,school_level,region\n")
        f.writelines(
            f"{s},{r},{lv},{g}\n"
            for s, r, lv, g in zip(truth.staff_ids, roles[truth.role], levels[truth.level], regions[truth.region])
        )


def _format_rows(seq0, day, ts, staff_ids, shown, prop, click, valid, bids, policy_name, outcome=None):
    """JSON Lines for one batch of requests, formatted directly (10M rows must be fast);
    an impression followed by its banner's outcome gets ``"outcome": 1``."""
    out = []
    ts_list = ts.astype(np.int64).tolist()
    staff_list = staff_ids.tolist()
    shown_l, prop_l, click_l, valid_l = shown.tolist(), prop.tolist(), click.astype(int).tolist(), valid.tolist()
    tail = [[""] * shown.shape[1]] * len(ts_list) if outcome is None else \
        [[', "outcome": 1' if o else "" for o in row] for row in outcome.tolist()]
    for i, t in enumerate(ts_list):
        local = datetime.fromtimestamp(t, KST).isoformat()
        head = f'{{"request_id": "r{day:03d}-{seq0 + i:08d}", "ts": "{local}", "staff_id": "{staff_list[i]}", '
        for j, ok in enumerate(valid_l[i]):
            if not ok:
                break
            out.append((t, f'{head}"banner_id": "{bids[shown_l[i][j]]}", "position": {j + 1}, '
                           f'"propensity": {prop_l[i][j]!r}, "clicked": {click_l[i][j]}, "policy": "{policy_name}"'
                           f'{tail[i][j]}}}\n'))
    return out
