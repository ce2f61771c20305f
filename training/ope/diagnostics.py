"""How far the importance weights can be trusted for a target policy.

Per position k (over the requests that logged that position): the effective sample size
ESS_k = (sum w)^2 / sum w^2 (Kish), its share of the requests, the largest weight and the
share of the total weight it carries, the smallest logged propensity among impressions the
target would also show, and the support gap: the share of requests where the logging
policy was deterministic at k (propensity 1) but the target puts mass on other banners
there (no logged impression can ever tell what those would have got).

IPS and SNIPS are flagged unreliable (the tool warns, with the ESS, instead of printing a
confident number) when at some position:
- ESS < max(MIN_ESS, MIN_ESS_SHARE x requests at that position), or
- one request carries more than MAX_WEIGHT_SHARE of the total weight, or
- the support gap exceeds MAX_SUPPORT_GAP, or
- the mean weight is not the target's mass at that position: E[w_k] = sum_b pi(b, k)
  holds whenever the logged propensities are right, so a ratio mean(w_k) / mean(mass_k)
  more than max(WEIGHT_MEAN_TOL, 4 standard errors) away from 1 means the propensities or
  the target are wrong (or the weights are too heavy-tailed to average out).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .data import LoggedBandit
from .policies import TargetPolicy

MIN_ESS = 200
MIN_ESS_SHARE = 0.01
MAX_WEIGHT_SHARE = 0.01
MAX_SUPPORT_GAP = 0.01
WEIGHT_MEAN_TOL = 0.1


@dataclass
class PositionDiagnostics:
    position: int
    requests: int
    ess: float
    ess_share: float
    max_weight: float
    max_weight_share: float
    min_propensity_used: float | None
    support_gap: float
    weight_mean_ratio: float


@dataclass
class Diagnostics:
    policy: str
    positions: list[PositionDiagnostics]
    ips_reliable: bool
    reasons: list[str]

    def to_dict(self) -> dict:
        return {"ips_reliable": self.ips_reliable, "reasons": self.reasons,
                "positions": [asdict(p) for p in self.positions]}

    @property
    def min_ess(self) -> float:
        return min((p.ess for p in self.positions if p.requests), default=0.0)


def diagnose(bandit: LoggedBandit, policy: TargetPolicy) -> Diagnostics:
    w = policy.weights(bandit)
    filled = bandit.filled
    pi_shown = policy.shown_probability(bandit)
    # target mass on other candidates at k = (mass at k) - pi(shown)
    K = bandit.slots
    mass = np.stack([np.bincount(bandit.cand_request, weights=policy.pi[:, k], minlength=bandit.n) for k in range(K)], axis=1)
    out, reasons = [], []
    for k in range(K):
        f = filled[:, k]
        nk = int(f.sum())
        if nk == 0:
            out.append(PositionDiagnostics(k + 1, 0, 0.0, 0.0, 0.0, 0.0, None, 0.0, 1.0))
            continue
        wk = w[f, k]
        s1, s2 = float(wk.sum()), float((wk ** 2).sum())
        ess = s1 * s1 / s2 if s2 > 0 else 0.0
        mx = float(wk.max())
        used = pi_shown[f, k] > 0
        pmin = float(bandit.propensity[f, k][used].min()) if used.any() else None
        det = bandit.propensity[f, k] >= 1.0 - 1e-12
        gap = float(np.mean(det & (mass[f, k] - pi_shown[f, k] > 1e-9)))
        mk = mass[f, k]
        ratio = s1 / mk.sum() if mk.sum() > 0 else 1.0
        se = float(np.std(wk - mk, ddof=1) / np.sqrt(nk) / mk.mean()) if nk > 1 and mk.mean() > 0 else 0.0
        d = PositionDiagnostics(k + 1, nk, ess, ess / nk, mx, mx / s1 if s1 > 0 else 0.0, pmin, gap, ratio)
        out.append(d)
        if ess < max(MIN_ESS, MIN_ESS_SHARE * nk):
            reasons.append(f"position {k + 1}: effective sample size {ess:,.0f} of {nk:,} requests "
                           f"({ess / nk:.2%}); smallest propensity used {pmin if pmin is not None else 'none'}")
        elif s1 > 0 and mx / s1 > MAX_WEIGHT_SHARE:
            reasons.append(f"position {k + 1}: one request carries {mx / s1:.1%} of the total weight "
                           f"(largest weight {mx:,.1f}; effective sample size {ess:,.0f})")
        if abs(ratio - 1.0) > max(WEIGHT_MEAN_TOL, 4 * se):
            reasons.append(f"position {k + 1}: the importance weights average {ratio:.2f} times the policy's mass "
                           "(1 when the logged propensities are right): propensities or weights are not trustworthy")
        if gap > MAX_SUPPORT_GAP:
            reasons.append(f"position {k + 1}: on {gap:.1%} of requests the logging policy was deterministic "
                           "(propensity 1) but this policy would show another banner; no logged click covers it")
    return Diagnostics(policy.name, out, not reasons, reasons)
