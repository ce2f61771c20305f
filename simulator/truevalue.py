"""True value of a target policy on simulated logs, from the simulator's ground truth.

For tests and benchmarks only: the ``evaluate`` command never imports this module (the
estimators see only the logs). The truth is the item-position value the estimators
target: sum over candidates and positions of pi(b, k) x P(click | person, b, k, history
strictly before the request), the history being the logged one (HistoryState). Under an
objective other than clicks (training.objective), the value is the expected reward:
P(click) x (clicks + outcomes x worth(b) x P(outcome | click, completed before)).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from recommender.contracts.impressions import ImpressionLog
from training.objective import Objective
from training.ope.data import LoggedBandit
from training.ope.policies import TargetPolicy

from .groundtruth import GroundTruth, HistoryState


class TrueValue:
    def __init__(self, truth: GroundTruth, bandit: LoggedBandit, logs: Sequence[ImpressionLog],
                 objective: Objective | None = None):
        """``logs``: every log whose events form the history (past logs and the evaluated one)."""
        s = np.concatenate([truth.staff_idx(np.asarray(l.staff_ids)[l.staff]) for l in logs])
        b = np.concatenate([truth.banner_idx(np.asarray(l.banner_ids)[l.banner]) for l in logs])
        hs = HistoryState(s, b, np.concatenate([l.ts for l in logs]), np.concatenate([l.clicked for l in logs]),
                          len(truth.banner_ids), np.concatenate([l.outcome for l in logs]))
        u = truth.staff_idx([bandit.staff_ids[x] for x in bandit.staff])[bandit.cand_request]
        bb = truth.banner_idx([bandit.catalog.banners[x].banner_id for x in bandit.cand_banner])
        t = bandit.ts[bandit.cand_request]
        views, cb = hs.at(u, bb, t)
        self.n = bandit.n
        self.p = np.stack([truth.click_probability(u, bb, k + 1, views, cb) for k in range(bandit.slots)], axis=1)
        if objective is not None and not objective.is_clicks:
            worth = objective.worth(bandit.catalog, bandit.catalog.ids)[bandit.cand_banner]
            after = truth.outcome_probability(u, bb, hs.completed_at(u, bb, t))
            self.p = self.p * (objective.clicks + objective.outcomes * worth * after)[:, None]

    def __call__(self, policy: TargetPolicy) -> float:
        return float((policy.pi * self.p).sum() / self.n)
