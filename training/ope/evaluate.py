"""Offline A/B evaluation of several target policies on one set of logged requests:
every estimator's value and interval per policy, the estimate per position and per banner
category, the paired differences against the first policy, diagnostics and warnings."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from recommender.candidates import COLD_START
from recommender.exploration import BOLTZMANN, Exploration
from training.artifact import load_model

from .data import EvaluationInputError, LoggedBandit
from .diagnostics import Diagnostics, diagnose
from .estimators import ESTIMATORS, Contributions, bootstrap, dr_breakdown, interval
from .policies import (TargetPolicy, logged_policy, model_policy, operators_policy, popularity_policy,
                       uniform_policy)

NAMED_POLICIES = ("popularity", "random", "logged", "operators")


@dataclass
class EvaluationResult:
    n_requests: int
    slots: int
    policies: dict[str, dict[str, dict]]
    differences: dict[str, dict[str, dict]]
    warnings: list[str]
    by_position: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    by_category: dict[str, dict[str, dict[str, dict]]] = field(default_factory=dict)
    diagnostics: dict[str, dict] = field(default_factory=dict)
    exclusions: dict[str, int] = field(default_factory=dict)
    n_logged_requests: int = 0
    n_partial_requests: int = 0
    outside_catalog_impressions: int = 0
    n_boot: int = 0
    click_model: str = ""
    resample: str = "request"
    objective: str = "clicks"  # what the values count (training.objective)

    def to_json(self) -> dict:
        return {
            "n_requests": self.n_requests, "slots": self.slots, "objective": self.objective, "policies": self.policies,
            "differences": self.differences, "warnings": self.warnings,
            "details": {"n_logged_requests": self.n_logged_requests, "n_partial_requests": self.n_partial_requests,
                        "outside_catalog_impressions": self.outside_catalog_impressions, "exclusions": self.exclusions,
                        "bootstrap_replicates": self.n_boot, "bootstrap_resamples": self.resample,
                        "click_model": self.click_model,
                        "by_position": self.by_position, "by_category": self.by_category,
                        "diagnostics": self.diagnostics},
        }

    @classmethod
    def from_json(cls, d: dict) -> "EvaluationResult":
        """The result back from ``to_json``: what a saved evaluation needs to be rendered again."""
        det = d.get("details", {})
        return cls(n_requests=d["n_requests"], slots=d["slots"], policies=d["policies"], differences=d.get("differences", {}),
                   warnings=d.get("warnings", []), by_position=det.get("by_position", {}),
                   by_category=det.get("by_category", {}), diagnostics=det.get("diagnostics", {}),
                   exclusions=det.get("exclusions", {}), n_logged_requests=det.get("n_logged_requests", 0),
                   n_boot=det.get("bootstrap_replicates", 0), click_model=det.get("click_model", ""),
                   resample=det.get("bootstrap_resamples", "request"), objective=d.get("objective", "clicks"))


def resolve_policy(spec: str, bandit: LoggedBandit, epsilon: float = 0.0,
                   exploration: Exploration | None = None) -> TargetPolicy:
    """A policy named on the command line: popularity, random, logged, operators (the
    operators' order, explored with ``epsilon`` as a service without a model serves it),
    or a model folder. ``exploration`` (recommender.exploration), when given, is how the
    operators' order and the models are explored instead of epsilon-greedy with ``epsilon``."""
    if spec == "popularity":
        return popularity_policy(bandit)
    if spec == "operators":
        return operators_policy(bandit, epsilon, exploration=exploration)
    if spec == "random":
        return uniform_policy(bandit)
    if spec == "logged":
        return logged_policy(bandit)
    path = Path(spec)
    if not path.exists():
        raise EvaluationInputError(f"--policy {spec!r}: no such model folder (or give one of {', '.join(NAMED_POLICIES)})")
    model = load_model(path)  # raises ArtifactError on a checksum mismatch
    name = str(model.version) + _exploration_suffix(epsilon, exploration)
    try:
        return model_policy(bandit, model, epsilon, name, exploration)
    except Exception as e:  # a model that cannot score these requests at all: say which and why
        raise EvaluationInputError(f"--policy {spec!r}: model {name} failed to score the candidates: {e}") from e


def _exploration_suffix(epsilon: float, exploration: Exploration | None) -> str:
    """How a model policy's name says it is explored: "+eps0.1" (epsilon-greedy, as before),
    "+boltzmann-eps0.1-t1-d3"."""
    if exploration is None or exploration.policy != BOLTZMANN:
        eps = epsilon if exploration is None else exploration.epsilon
        return f"+eps{eps:g}" if eps > 0 else ""
    x = exploration
    return f"+boltzmann-eps{x.epsilon:g}-t{x.temperature:g}-d{x.depth}" if x.epsilon > 0 else ""


def check_policy(bandit: LoggedBandit, policy: TargetPolicy) -> None:
    """A target policy must be a distribution at every position: 0 <= pi, and at most one
    banner in total per position of a request."""
    pi = policy.pi
    if pi.shape != (len(bandit.cand_banner), bandit.slots):
        raise EvaluationInputError(f"policy {policy.name}: expected probabilities of shape "
                                   f"{(len(bandit.cand_banner), bandit.slots)}, got {pi.shape}")
    if not np.all(np.isfinite(pi)) or pi.min(initial=0.0) < 0:
        raise EvaluationInputError(f"policy {policy.name}: probabilities must be finite and non-negative")
    for k in range(bandit.slots):
        mass = np.bincount(bandit.cand_request, weights=pi[:, k], minlength=bandit.n)
        if mass.max(initial=0.0) > 1 + 1e-6:
            i = int(mass.argmax())
            raise EvaluationInputError(f"policy {policy.name}: position {k + 1} of request {bandit.request_ids[i]!r} "
                                       f"has total probability {mass[i]:.4f} > 1")


def _unique_names(policies: Sequence[TargetPolicy]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for p in policies:
        n = seen.get(p.name, 0) + 1
        seen[p.name] = n
        out.append(p.name if n == 1 else f"{p.name}#{n}")
    return out


def common_requests(bandit: LoggedBandit, policies: Sequence[TargetPolicy], q: np.ndarray | None):
    """Restrict the bandit, the policies and q to the requests every policy can rank."""
    usable = np.ones(bandit.n, dtype=bool)
    for p in policies:
        if p.usable is not None:
            usable &= p.usable
    if usable.all():
        return bandit, list(policies), q, {}
    if not usable.any():
        raise EvaluationInputError("no logged request can be ranked by every policy")
    rows = np.flatnonzero(usable[bandit.cand_request])
    req = np.flatnonzero(usable)
    sub = bandit.subset(usable)
    excl = {"requests some policy cannot rank (its candidates could not be scored)": int((~usable).sum())}
    sub.exclusions.update(excl)
    return sub, [p.restrict(rows, req) for p in policies], (None if q is None else q[rows]), excl


def evaluate(bandit: LoggedBandit, policies: Sequence[TargetPolicy], q: np.ndarray | None = None,
             n_boot: int = 200, seed: int = 0, click_model: str = "", breakdowns: bool = True,
             resample: str = "request") -> EvaluationResult:
    """Evaluate ``policies`` on ``bandit``; q (N, K) are the click model's probabilities
    (None: the direct method and doubly robust are not computed). Differences are each
    policy minus the first one, paired on the same requests and resamples. ``resample``:
    "request" (default) resamples requests one by one; "staff" resamples staff members with
    all their requests (keeps the correlation of one person's requests; on the simulator
    it gave the same intervals)."""
    if resample not in ("staff", "request"):
        raise ValueError("resample must be 'staff' or 'request'")
    if not policies:
        raise EvaluationInputError("give at least one policy")
    for p in policies:
        check_policy(bandit, p)
    bandit, policies, q, _ = common_requests(bandit, policies, q)
    names = _unique_names(policies)
    K = bandit.slots
    ests = [e for e in ESTIMATORS if q is not None or not e.needs_model]
    # breakdowns by position and category: the doubly robust estimate (SNIPS without a click model)
    split_ests = [e for e in ests if e.name == ("dr" if q is not None else "snips")]
    cats = bandit.categories()
    cand_cat = bandit.cand_category() if breakdowns else None
    # every (policy, estimator, slice) as contributions, bootstrapped together
    keys: list[tuple[str, str, str]] = []
    contribs: list[Contributions] = []
    for name, pol in zip(names, policies):
        for e in ests:
            keys.append((name, e.name, "all"))
            contribs.append(e.contributions(bandit, pol, q))
        if not breakdowns:
            continue
        if split_ests[0].name == "dr":
            by_pos_c, by_cat_c = dr_breakdown(bandit, pol, q, cand_cat, len(cats))
        else:
            cells = [np.eye(K)[None, k].repeat(len(cand_cat), 0) for k in range(K)]
            by_pos_c = [split_ests[0].contributions(bandit, pol, q, cell) for cell in cells]
            by_cat_c = [split_ests[0].contributions(bandit, pol, q, np.repeat((cand_cat == ci)[:, None], K, 1).astype(float))
                        for ci in range(len(cats))]
        e = split_ests[0]
        for k, c in enumerate(by_pos_c):
            keys.append((name, e.name, f"pos{k + 1}"))
            contribs.append(c)
        for c, contrib in zip(cats, by_cat_c):
            keys.append((name, e.name, f"cat:{c}"))
            contribs.append(contrib)
    reps = bootstrap(contribs, n_boot, seed, clusters=bandit.staff if resample == "staff" else None)
    values = {key: c.value() for key, c in zip(keys, contribs)}
    rep_of = dict(zip(keys, reps))

    res_pol: dict[str, dict[str, dict]] = {}
    by_pos: dict[str, dict[str, list[dict]]] = {}
    by_cat: dict[str, dict[str, dict[str, dict]]] = {}
    for name in names:
        res_pol[name] = {e.name: interval(values[(name, e.name, "all")], rep_of[(name, e.name, "all")]).to_dict() for e in ests}
        if breakdowns:
            by_pos[name] = {e.name: [interval(values[(name, e.name, f"pos{k + 1}")], rep_of[(name, e.name, f"pos{k + 1}")]).to_dict()
                                     for k in range(K)] for e in split_ests}
            by_cat[name] = {e.name: {c: interval(values[(name, e.name, f"cat:{c}")], rep_of[(name, e.name, f"cat:{c}")]).to_dict()
                                     for c in cats} for e in split_ests}
    diffs: dict[str, dict[str, dict]] = {}
    base = names[0]
    for name in names[1:]:
        diffs[f"{name}-{base}"] = {
            e.name: interval(values[(name, e.name, "all")] - values[(base, e.name, "all")],
                             rep_of[(name, e.name, "all")] - rep_of[(base, e.name, "all")]).to_dict() for e in ests}

    warnings: list[str] = []
    diags: dict[str, Diagnostics] = {}
    for name, pol in zip(names, policies):
        d = diagnose(bandit, pol)
        diags[name] = d
        if not d.ips_reliable:
            warnings.append(f"{name}: IPS and SNIPS are unreliable (effective sample size {d.min_ess:,.0f} of "
                            f"{bandit.n:,} requests at the worst position): " + "; ".join(d.reasons))
        warnings.extend(f"{name}: {note}" for note in pol.notes)
    for reason, count in bandit.exclusions.items():
        warnings.append(f"excluded {count:,} {reason}")
    if bandit.n_partial:
        warnings.append(f"{bandit.n_partial:,} of {bandit.n:,} requests are partial (some of their first {K} positions "
                        "were not logged): each position is averaged over the requests that logged it")
    if bandit.outside_catalog_rows:
        warnings.append(f"{bandit.outside_catalog_rows:,} evaluated impressions name banners outside the catalog: {COLD_START}")
    if bandit.unknown_staff:
        warnings.append(f"{bandit.unknown_staff:,} requests come from staff not in the staff file (ranked as unknown staff)")
    if q is None:
        warnings.append("no click model: the direct method and doubly robust were not computed")
    return EvaluationResult(bandit.n, K, res_pol, diffs, warnings, by_pos, by_cat,
                            {n: d.to_dict() for n, d in diags.items()}, dict(bandit.exclusions),
                            bandit.n_logged_requests, bandit.n_partial, bandit.outside_catalog_rows, n_boot,
                            click_model, resample, bandit.objective)


def _unit(objective: str) -> str:
    return objective if objective in ("clicks", "outcomes") else f"reward ({objective})"


def format_table(result: EvaluationResult) -> str:
    """The plain-text table the command prints."""
    def cell(e: dict, reliable: bool = True) -> str:
        s = f"{e['value']:.4f} [{e['ci_low']:.4f}, {e['ci_high']:.4f}]"
        return s if reliable else "unreliable " + s
    est = list(next(iter(result.policies.values())).keys())
    width = max([len(n) for n in result.policies] + [len(n) for n in result.differences] + [10])
    partial = f", {result.n_partial_requests:,} of them partial" if result.n_partial_requests else ""
    lines = [f"{result.n_requests:,} requests evaluated (of {result.n_logged_requests:,} logged{partial}), first {result.slots} "
             f"positions; expected {_unit(result.objective)} per request, 95% bootstrap intervals ({result.n_boot} resamples of "
             f"{'staff members with their requests' if result.resample == 'staff' else 'requests'})",
             "", f"{'policy':<{width}}  " + "  ".join(f"{e.upper():<36}" for e in est)]
    for name, vals in result.policies.items():
        ok = result.diagnostics.get(name, {}).get("ips_reliable", True)
        lines.append(f"{name:<{width}}  " + "  ".join(f"{cell(vals[e], ok or e not in ('ips', 'snips')):<36}" for e in est))
    if result.differences:
        lines += ["", "paired differences (same requests, same resamples):"]
        for name, vals in result.differences.items():
            lines.append(f"{name:<{width}}  " + "  ".join(f"{cell(vals[e]):<36}" for e in est))
    lines += ["", "effective sample size per position (importance weights of IPS/SNIPS/DR):"]
    for name, d in result.diagnostics.items():
        ess = ", ".join(f"{p['ess']:,.0f} ({p['ess_share']:.1%})" for p in d["positions"])
        lines.append(f"{name:<{width}}  {ess}")
    if result.warnings:
        lines += ["", "warnings:"] + [f"  - {w}" for w in result.warnings]
    return "\n".join(lines)
