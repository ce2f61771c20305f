"""Outcomes after a click, in the simulated province (``SimulationConfig.outcomes``).

A click on a survey banner may end in an answered survey ("complete"), a click on an
event banner in a sign-up ("convert"); a click on the other categories' banners ends in
no outcome. Given a click, the chance of the outcome is

    P(outcome | click, staff u, banner b) = sigmoid(base[cat_b] + role[role_u, cat_b] + person[u, cat_b])

and 0 once u has had b's outcome (a survey is answered once). It differs by category
(``base``), by role and by person (hidden, like the click model's interests), so a model
of clicks alone is not a model of outcomes. The catalog says what follows an outcome:
surveys are hidden from whoever answered them, event banners down-weighted. Drawn from a
random generator of their own, so the clicks of a province with outcomes are those of the
same province without, up to what the logging policy hides.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from recommender.domain import CATEGORIES, Banner, OutcomeRule

from .population import ROLES

RULES = {"survey": OutcomeRule("complete", 1.0, "hide"),
         "event": OutcomeRule("convert", 1.0, "downweight", 0.3)}
BASE_LOGIT = {"survey": -0.6, "event": -1.4}  # about 35% and 20% of clicks, before role and person


def with_outcome_rules(banners: list[Banner]) -> list[Banner]:
    """The catalog with the outcome rule of each survey and event banner."""
    return [dataclasses.replace(b, outcome=RULES[b.category]) if b.category in RULES else b for b in banners]


def outcome_truth(seed: int, n_staff: int) -> dict[str, np.ndarray]:
    """The outcome model's parameters (GroundTruth's ``outcome_*`` arrays)."""
    rng = np.random.default_rng([seed, 0x0C])
    nc = len(CATEGORIES)
    base = np.full(nc, -np.inf)
    for cat, logit in BASE_LOGIT.items():
        base[CATEGORIES.index(cat)] = logit
    return {"outcome_base": base, "outcome_role": rng.normal(0, 0.5, (len(ROLES), nc)),
            "outcome_person": rng.normal(0, 0.8, (n_staff, nc))}


def outcome_rng(seed: int) -> np.random.Generator:
    """The generator of the outcome draws (apart from the clicks' generator)."""
    return np.random.default_rng([seed, 0x0D])


def draw_outcomes(truth, u: np.ndarray, shown: np.ndarray, click: np.ndarray, completed: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """Draw the outcomes of a batch's clicks (m, K) and mark them in ``completed`` (n, nb)."""
    p = truth.outcome_probability(u[:, None], shown, completed[u[:, None], shown])
    out = click & (rng.random(shown.shape) < p)
    completed[u[:, None].repeat(shown.shape[1], 1)[out], shown[out]] = True
    return out
