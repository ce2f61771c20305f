"""The closed loop: the province served by the service's own policy, retrained every day.

Each day the click model is trained on every log so far (``training.train.train`` with
the given TrainConfig; before the first model, the operators' order, as the service
starts); it scores each request's eligible banners with the click history up to the
request; an exploration policy picks the shown ranking and its exact propensities; the
clicks are drawn from the ground truth. Several policies run side by side on the same
world: the same staff, banners, truth, active people and request times (drawn from the
world's seed alone), and the same random numbers for the clicks, so that what differs is
the policy and what it learned from its own logs.

A policy is judged on the TRUE expected clicks of the rankings it showed (from the
ground truth, with each person's views and clicks at that time), not on its sampled
clicks, which are noisy.

The service updates its history at every event. Here each person's up to three loads of
a day are served in rounds (every first load of the day, then every second, then every
third); the history is rebuilt between rounds. A person's own history is then exact
(their loads come in time order); what is missed is other people's later-round loads
that happened earlier in the day, which only the banners' global counts read.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from features.pipeline import history_features, history_from_logs
from recommender.boltzmann import boltzmann_greedy
from recommender.contracts import ImpressionLog, write_banners
from recommender.domain import Banner, Catalog, Staff, StaffDirectory
from recommender.exploration import epsilon_greedy
from recommender.ordering import greedy_keys
from recommender.progress import progress_bar
from recommender.timeutil import KST
from training.artifact import ModelArtifact
from training.dataset import TrainingDataError
from training.linear import linear_rows
from training.train import TrainConfig, train

from .banners import make_banners
from .groundtruth import GroundTruth
from .population import LEVELS, REGIONS, ROLES
from .run import DAY, SimulationConfig, _format_rows, _make_truth, _write_staff, click_probability, day_schedule
from .run import show, static_parts


# ---- policies -------------------------------------------------------------------------
@dataclass
class Batch:
    """What an exploration policy sees of a batch of requests (each person at most once)."""

    eligible: np.ndarray  # (m, n) bool: each request's candidates among the catalog's n banners
    scores: np.ndarray  # (m, n) the model's logits (0 where not eligible, and everywhere before a model)
    keys: np.ndarray  # (m, n) greedy sort keys (recommender.ordering.greedy_keys): lower is shown first
    pinned: np.ndarray  # (n,) bool
    slots: int
    has_model: bool


# (batch, rng) -> shown (m, slots) banner indices (-1 past the candidates), propensity (m, slots), explored (m,)
Sampler = Callable[[Batch, np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Policy:
    """An exploration policy: its name (logged in every row's ``policy``) and its sampler."""

    name: str
    sample: Sampler


def epsilon_greedy_policy(epsilon: float) -> Policy:
    """The service's exploration (recommender.exploration.epsilon_greedy); epsilon 0 is greedy."""
    name = "greedy" if epsilon == 0 else f"epsilon-greedy-{epsilon:g}"
    return Policy(name, lambda b, rng: epsilon_greedy(b.eligible, b.keys, b.pinned, epsilon, b.slots, rng))


# Policies by name (the benchmark's --policies). A batch sampler with the interface of
# epsilon_greedy joins with one line here.
POLICIES: dict[str, Callable[[], Policy]] = {
    "greedy": lambda: epsilon_greedy_policy(0.0),
    "epsilon-greedy-0.1": lambda: epsilon_greedy_policy(0.1),
    "epsilon-greedy-0.2": lambda: epsilon_greedy_policy(0.2),
    "boltzmann-0.1": lambda: Policy("boltzmann-0.1", lambda b, rng: boltzmann_greedy(
        b.eligible, b.keys, b.scores, b.pinned, 0.1, b.slots, rng, temperature=1.0, depth=3)),
}


def policy_by_name(name: str) -> Policy:
    """A policy of POLICIES, or ``epsilon-greedy-<eps>`` for any epsilon in [0, 1]."""
    if name in POLICIES:
        return POLICIES[name]()
    if name.startswith("epsilon-greedy-"):
        try:
            eps = float(name.removeprefix("epsilon-greedy-"))
        except ValueError:
            eps = -1.0
        if 0.0 <= eps <= 1.0:
            return epsilon_greedy_policy(eps)
    raise ValueError(f"unknown policy {name!r} (one of {', '.join(POLICIES)}, or epsilon-greedy-<epsilon>)")


# ---- the world ------------------------------------------------------------------------
@dataclass
class ClosedLoopConfig:
    world: SimulationConfig = field(default_factory=lambda: SimulationConfig(staff=20_000))  # staff, days, seed, setting
    train: TrainConfig = field(default_factory=TrainConfig)
    parity_requests: int = 3000  # requests per round sampled for the new banners' pair agreement


class World:
    """The staff, banners, ground truth and traffic of ``simulate`` with the same config and
    seed (the same truth, and the same people's activity); the requests of each day are
    drawn from the seed and the day alone, so that every policy gets the same ones."""

    def __init__(self, cfg: SimulationConfig):
        self.cfg = cfg
        rng = np.random.default_rng(cfg.seed)
        self.t0 = datetime.fromisoformat(cfg.start).replace(tzinfo=KST).timestamp()
        self.banners: list[Banner] = make_banners(self.t0, self.t0 + cfg.days * DAY, cfg.banners, cfg.seed)
        self.truth: GroundTruth = _make_truth(cfg, rng, self.banners)
        self.target_ok, self.base_logit = static_parts(self.truth, self.banners)
        self.activity = np.clip(rng.beta(4, 2, cfg.staff) * cfg.active_share / (4 / 6), 0, 1)
        self.starts = np.array([-np.inf if b.start is None else b.start for b in self.banners])
        self.ends = np.array([np.inf if b.end is None else b.end for b in self.banners])
        self.pinned = np.array([b.pinned for b in self.banners])
        self.priority = np.array([b.priority for b in self.banners])
        self.catalog = Catalog(self.banners)
        roles, levels, regions = np.array(ROLES), np.array(LEVELS), np.array(REGIONS)
        t = self.truth
        self.staff = StaffDirectory(
            Staff(s, {"role": r, "school_level": lv, "region": g})
            for s, r, lv, g in zip(t.staff_ids, roles[t.role].tolist(), levels[t.level].tolist(), regions[t.region].tolist()))
        self.profiles = [self.staff.get(s).attributes for s in t.staff_ids]

    def rounds(self, day: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The day's requests in rounds (every first load, then second, then third): per
        round (people, integer epoch seconds, eligible (m, n_banners)); loads with no
        eligible banner are left out."""
        rng = np.random.default_rng([self.cfg.seed, 0xDA7, day])
        active, n_req, times = day_schedule(self.activity, self.t0 + day * DAY, rng)
        out = []
        for k in range(3):
            sel = n_req > k
            u, ts = active[sel], times[k][sel]
            elig = self.target_ok[u] & (self.starts[None, :] <= ts[:, None]) & (ts[:, None] < self.ends[None, :])
            keep = elig.any(axis=1)
            out.append((u[keep], ts[keep], elig[keep]))
        return out

    def new_banners(self) -> np.ndarray:
        """Catalog indices of the banners that start after the first day begins."""
        return np.flatnonzero(self.starts > self.t0)

    def write(self, out: Path) -> None:
        """staff.csv, banners.json and the truth, as ``simulate`` writes them."""
        out.mkdir(parents=True, exist_ok=True)
        _write_staff(out / "staff.csv", self.truth)
        write_banners(out / "banners.json", self.banners)
        self.truth.save(out)


def score_candidates(model: ModelArtifact, world: World, u: np.ndarray, ts: np.ndarray, elig: np.ndarray, history) -> np.ndarray:
    """The model's logit of every eligible (request, banner), 0 elsewhere (m, n_banners):
    ``ModelArtifact.score``'s features and model, with the catalog's banners encoded once
    rather than once per row (a test checks that both give the same scores)."""
    r, b = np.nonzero(elig)
    people, person = np.unique(u[r], return_inverse=True)
    enc = model.encoder
    staff = enc.encode_staff([world.profiles[i] for i in people.tolist()])
    banners = enc.encode_banners(world.banners)
    ids = [world.truth.staff_ids[i] for i in people.tolist()]
    row_ts = ts[r].astype(np.float64)
    hist = history_features(history, ids, person, banners, b, row_ts)
    args = (staff, person, banners, b, row_ts, None, hist)
    X = linear_rows(enc, *args) if model.kind == "logistic" else enc.transform(*args, dense=True)
    out = np.zeros(elig.shape)
    out[r, b] = model.logit_from_matrix(X)
    return out


# ---- new banners: how soon the model orders them as well as the others ----------------
def pair_agreement(scores: np.ndarray, truth_value: np.ndarray, eligible: np.ndarray, left: np.ndarray,
                   right: np.ndarray) -> tuple[float, int]:
    """Over the requests' eligible pairs (a in ``left``, b in ``right``, a != b), how many
    the scores order as the truth does (a tie in the scores counts half), and how many
    pairs (pairs where the truth ties are left out)."""
    s = scores[:, left][:, :, None] - scores[:, right][:, None, :]
    t = truth_value[:, left][:, :, None] - truth_value[:, right][:, None, :]
    ok = eligible[:, left][:, :, None] & eligible[:, right][:, None, :] & (left[:, None] != right[None, :])[None] & (t != 0)
    agree = np.where(s * t > 0, 1.0, np.where(s == 0, 0.5, 0.0))
    return float(agree[ok].sum()), int(ok.sum())


@dataclass
class NewBannerParity:
    """Per day (after the day's retrain): each new banner's pair agreement, that of the
    established banners among themselves, and the new banner's impressions so far."""

    banner_ids: list[str]
    start_day: list[int]
    agreement: dict[str, list[float]] = field(default_factory=dict)  # banner -> per day (nan: not measured)
    impressions: dict[str, list[int]] = field(default_factory=dict)  # banner -> impressions before the day
    established: list[float] = field(default_factory=list)  # per day

    def impressions_to_parity(self) -> dict[str, int | None]:
        """Each new banner's impressions when its agreement first reaches the established
        banners' that day; None when it never does in the run."""
        out: dict[str, int | None] = {}
        for b in self.banner_ids:
            out[b] = None
            for d, a in enumerate(self.agreement[b]):
                if not np.isnan(a) and not np.isnan(self.established[d]) and a >= self.established[d]:
                    out[b] = self.impressions[b][d]
                    break
        return out

    def median_impressions_to_parity(self) -> float | None:
        """The median over new banners, 'never' counting as more than any number (None
        when at least half never reach parity)."""
        vals = sorted(np.inf if v is None else v for v in self.impressions_to_parity().values())
        if not vals:
            return None
        m = float(np.median(vals))
        return None if np.isinf(m) else m


# ---- one policy's run -----------------------------------------------------------------
@dataclass
class PolicyRun:
    policy: str
    expected_clicks: list[float]  # per day: true expected clicks of every shown ranking
    clicks: list[int]  # per day: sampled clicks
    requests: list[int]
    impressions: list[int]
    models: list[str]  # per day: the model kind that served ("operators" before the first)
    parity: NewBannerParity
    train_seconds: list[float] = field(default_factory=list)  # per day
    serve_seconds: list[float] = field(default_factory=list)  # per day: scoring, exploring, clicks, parity
    log: ImpressionLog | None = None  # every day's impressions, in the impression contract

    @property
    def total_expected_clicks(self) -> float:
        return float(sum(self.expected_clicks))


class _Logs:
    """The impressions so far as one ImpressionLog over the catalog's and staff's ids."""

    def __init__(self, world: World, policy: str):
        self.staff_ids = list(world.truth.staff_ids)
        self.banner_ids = [b.banner_id for b in world.banners]
        self.policy = policy
        self.parts: list[dict[str, np.ndarray]] = []
        self.request_ids: list[str] = []

    def add(self, request_ids: list[str], u, ts, shown, prop, click, valid) -> None:
        r, k = np.nonzero(valid)
        base = len(self.request_ids)
        self.request_ids.extend(request_ids)
        self.parts.append({"request": base + r, "ts": ts[r].astype(np.float64), "staff": u[r].astype(np.int64),
                           "banner": shown[r, k].astype(np.int64), "position": k + 1,
                           "propensity": prop[r, k].astype(np.float64), "clicked": click[r, k].astype(np.int8)})

    def log(self) -> ImpressionLog:
        cols = {name: np.concatenate([p[name] for p in self.parts]) if self.parts else np.zeros(0)
                for name in ("request", "ts", "staff", "banner", "position", "propensity", "clicked")}
        order = np.lexsort((cols["position"], cols["request"], cols["ts"]))
        cols = {k: v[order] for k, v in cols.items()}
        return ImpressionLog(request_ids=list(self.request_ids), staff_ids=self.staff_ids, banner_ids=self.banner_ids,
                             policies=[self.policy], request=cols["request"].astype(np.int64), ts=cols["ts"],
                             staff=cols["staff"].astype(np.int64), banner=cols["banner"].astype(np.int64),
                             position=cols["position"].astype(np.int64), propensity=cols["propensity"],
                             clicked=cols["clicked"].astype(np.int8), policy=np.zeros(len(order), dtype=np.int64),
                             source=f"closed loop {self.policy}")


def run_policy(world: World, policy: Policy, cfg: ClosedLoopConfig, out: Path | None = None,
               on_day: Callable[[int], None] | None = None) -> PolicyRun:
    """Serve every day of ``world`` with ``policy`` around the daily-retrained model.
    Writes ``out/impressions.jsonl`` when ``out`` is given."""
    wc = world.cfg
    n, nb, K = wc.staff, len(world.banners), wc.slots
    truth = world.truth
    views = np.zeros((n, nb), dtype=np.int16)
    clicked_before = np.zeros((n, nb), dtype=bool)
    logs = _Logs(world, policy.name)
    bids = logs.banner_ids
    ids = np.array(truth.staff_ids)
    new = world.new_banners()
    established = np.setdiff1d(np.arange(nb), new)
    parity = NewBannerParity([bids[j] for j in new], [int((world.starts[j] - world.t0) // DAY) for j in new],
                             {bids[j]: [] for j in new}, {bids[j]: [] for j in new})
    shown_count = np.zeros(nb, dtype=np.int64)
    run = PolicyRun(policy.name, [], [], [], [], [], parity)
    f = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        f = open(out / "impressions.jsonl", "w", encoding="utf-8")
    try:
        for d in range(wc.days):
            model = None
            t = time.perf_counter()
            if d > 0:
                try:
                    model = train(world.staff, world.catalog, logs.log(), None, cfg.train).artifact
                except TrainingDataError:  # too short a log to hold a day out, or no clicks yet: no model
                    model = None
            run.models.append("operators" if model is None else model.kind)
            run.train_seconds.append(time.perf_counter() - t)
            t = time.perf_counter()
            agree = {j: [0.0, 0] for j in new}
            est = [0.0, 0]
            for j in new:
                parity.impressions[bids[j]].append(int(shown_count[j]))
            expected, clicks, n_requests, n_imp, seq = 0.0, 0, 0, 0, 0
            day_lines: list[tuple[float, str]] = []
            for k, (u, ts, elig) in enumerate(world.rounds(d)):
                m = len(u)
                if m == 0:
                    continue
                if model is None:
                    scores = np.zeros(elig.shape)
                else:
                    history = history_from_logs([logs.log()], world.catalog, model.encoder.config.half_life_days)
                    scores = score_candidates(model, world, u, ts, elig, history)
                keys = greedy_keys(scores, world.pinned, world.priority)
                rng = np.random.default_rng([wc.seed, 0x9011C7, d, k])
                shown, prop, _ = policy.sample(Batch(elig, scores, keys, world.pinned, K, model is not None), rng)
                valid = shown >= 0
                shown = np.where(valid, shown, 0)
                if model is not None and len(new):
                    _measure_parity(world, u, elig, scores, views, clicked_before, new, established, agree, est,
                                    cfg.parity_requests, np.random.default_rng([wc.seed, 0x9A1, d, k]))
                expected += float((click_probability(u, shown, truth, world.base_logit, views, clicked_before)
                                   * valid).sum())
                click = show(u, shown, valid, truth, world.base_logit, views, clicked_before,
                             np.random.default_rng([wc.seed, 0xC11C, d, k]))
                np.add.at(shown_count, shown[valid], 1)
                request_ids = [f"r{d:03d}-{seq + i:08d}" for i in range(m)]
                logs.add(request_ids, u, ts, shown, prop, click, valid)
                if f is not None:
                    day_lines.extend(_format_rows(seq, d, ts, ids[u], shown, prop, click, valid, bids, policy.name))
                clicks += int(click.sum())
                n_requests += m
                n_imp += int(valid.sum())
                seq += m
            for j in new:
                a, c = agree[j]
                parity.agreement[bids[j]].append(a / c if c else float("nan"))
            parity.established.append(est[0] / est[1] if est[1] else float("nan"))
            if f is not None:
                day_lines.sort(key=lambda x: x[0])
                f.writelines(line for _, line in day_lines)
            run.serve_seconds.append(time.perf_counter() - t)
            run.expected_clicks.append(expected)
            run.clicks.append(clicks)
            run.requests.append(n_requests)
            run.impressions.append(n_imp)
            if on_day is not None:
                on_day(d)
    finally:
        if f is not None:
            f.close()
    run.log = logs.log()
    return run


def _measure_parity(world: World, u, elig, scores, views, clicked_before, new, established, agree: dict, est: list,
                    max_requests: int, rng: np.random.Generator) -> None:
    """Add one round's pair agreements (on up to ``max_requests`` requests) into
    ``agree`` (new banner -> [agreeing, pairs]) and ``est`` (established pairs)."""
    rows = np.arange(len(u))
    if len(rows) > max_requests:
        rows = np.sort(rng.choice(len(rows), max_requests, replace=False))
    uu, el, sc = u[rows], elig[rows], scores[rows]
    nb = elig.shape[1]
    b = np.broadcast_to(np.arange(nb), el.shape)
    attr = world.truth.attractiveness(uu[:, None], b, views[uu], clicked_before[uu])
    for j in new:
        has = el[:, j]
        if has.any():
            a, c = pair_agreement(sc[has], attr[has], el[has], np.array([j]), np.arange(nb))
            agree[j][0] += a
            agree[j][1] += c
    for lo in range(0, len(rows), 500):  # (requests, E, E) arrays: in chunks
        a, c = pair_agreement(sc[lo:lo + 500], attr[lo:lo + 500], el[lo:lo + 500], established, established)
        est[0] += a
        est[1] += c


# ---- side by side ---------------------------------------------------------------------
@dataclass
class ClosedLoopResult:
    setting: dict
    runs: dict[str, PolicyRun]

    def summary(self) -> dict:
        return {"setting": self.setting, "policies": {
            name: {"total_expected_clicks": r.total_expected_clicks, "expected_clicks": r.expected_clicks,
                   "clicks": r.clicks, "requests": r.requests, "impressions": r.impressions, "models": r.models,
                   "impressions_to_parity": r.parity.impressions_to_parity(),
                   "median_impressions_to_parity": r.parity.median_impressions_to_parity()}
            for name, r in self.runs.items()}}


def run_closed_loop(policies: Sequence[Policy], cfg: ClosedLoopConfig, out_dir: str | Path | None = None,
                    progress: bool = True) -> ClosedLoopResult:
    """Every policy over the same world, one after the other. With ``out_dir``: the world's
    staff.csv, banners.json and truth, and each policy's impressions.jsonl in a folder of
    its name, and closedloop.json (the summary)."""
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ValueError(f"policies must have distinct names: {names}")
    world = World(cfg.world)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        world.write(out)
    runs: dict[str, PolicyRun] = {}
    for p in policies:
        bar = progress_bar(total=cfg.world.days, desc=p.name, unit="day", **({} if progress else {"disable": True}))
        runs[p.name] = run_policy(world, p, cfg, out / p.name if out is not None else None, on_day=lambda d: bar.update(1))
        bar.close()
    result = ClosedLoopResult(asdict(cfg.world), runs)
    if out is not None:
        (out / "closedloop.json").write_text(json.dumps(result.summary(), indent=1, default=str), encoding="utf-8")
    return result
