"""What a model is trained for and a policy is valued by: clicks, outcomes, or a weighted sum.

The reward of one impression is

    r = clicks x clicked + outcomes x worth(banner) x outcome

with ``clicked`` 0 or 1, ``outcome`` the impression's logged outcome in [0, 1] (a survey
answered, a sign-up: recommender.contracts.impressions) and ``worth`` the banner's
``outcome.value`` (1 for a banner without an outcome rule). Under the item-position model
it is bounded, 0 <= r <= ``bound``, so the counterfactual estimators of offline evaluation
value a policy by it as they do by clicks, and a model learns it as a click model learns
clicks: a logistic regression fitted on the label r / bound (a soft label in [0, 1]; the
log loss is a proper scoring rule for it), whose probability times the bound is the
expected reward. The click objective's label is the click itself, so it trains exactly
as before.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.domain import Catalog

__all__ = ["Objective", "CLICKS", "OUTCOMES"]


@dataclass(frozen=True)
class Objective:
    """The weights of clicks and of outcomes in an impression's reward."""

    clicks: float = 1.0
    outcomes: float = 0.0

    def __post_init__(self) -> None:
        for name in ("clicks", "outcomes"):
            w = getattr(self, name)
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < float("inf"):
                raise ValueError(f"the weight of {name} must be a number of 0 or more, got {w!r}")
        if self.clicks == 0 and self.outcomes == 0:
            raise ValueError("an objective needs a weight above 0 for clicks or for outcomes")

    @classmethod
    def parse(cls, text: str) -> "Objective":
        """``clicks``, ``outcomes``, or weights such as ``clicks=1,outcomes=4``."""
        text = text.strip()
        if text in ("clicks", "outcomes"):
            return cls(1.0 if text == "clicks" else 0.0, 1.0 if text == "outcomes" else 0.0)
        weights = {"clicks": 0.0, "outcomes": 0.0}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in weights:
                raise ValueError(f"objective {text!r}: give clicks, outcomes, or weights like clicks=1,outcomes=4")
            try:
                weights[name] = float(value)
            except ValueError:
                raise ValueError(f"objective {text!r}: the weight of {name} must be a number") from None
        return cls(weights["clicks"], weights["outcomes"])

    @classmethod
    def from_dict(cls, d: dict | None) -> "Objective":
        return cls() if not d else cls(float(d.get("clicks", 0.0)), float(d.get("outcomes", 0.0)))

    def to_dict(self) -> dict:
        return {"clicks": self.clicks, "outcomes": self.outcomes, "name": self.name}

    @property
    def is_clicks(self) -> bool:
        """Clicks alone (any weight): it ranks as clicks do."""
        return self.outcomes == 0

    @property
    def name(self) -> str:
        if self.is_clicks:
            return "clicks"
        if self.clicks == 0:
            return "outcomes"
        return f"clicks={self.clicks:g},outcomes={self.outcomes:g}"

    @property
    def unit(self) -> str:
        """What its value counts per request: clicks, outcomes, or reward."""
        return "clicks" if self.is_clicks else "outcomes" if self.clicks == 0 else "reward"

    def metric(self, slots: int) -> str:
        """The name of its validation metric: the IPS value of a ranking's first ``slots`` positions."""
        return f"{self.unit}@{slots}"

    def worth(self, catalog: Catalog, banner_ids: list[str]) -> np.ndarray:
        """Each banner's worth of one outcome (its rule's ``value``; 1 without a rule)."""
        out = np.ones(len(banner_ids))
        for i, b in enumerate(banner_ids):
            banner = catalog.get(b)
            if banner is not None and banner.outcome is not None:
                out[i] = banner.outcome.value
        return out

    def bound(self, catalog: Catalog) -> float:
        """The largest reward of one impression."""
        if self.is_clicks:
            return float(self.clicks)
        top = max([1.0, *(b.outcome.value for b in catalog.banners if b.outcome is not None)])
        return float(self.clicks + self.outcomes * top)

    def rewards(self, log, catalog: Catalog) -> np.ndarray:
        """The reward of each row of an impression log (recommender.contracts.ImpressionLog)."""
        r = self.clicks * log.clicked.astype(np.float64)
        if self.outcomes:
            r = r + self.outcomes * self.worth(catalog, log.banner_ids)[log.banner] * log.outcome
        return r

    def labels(self, log, catalog: Catalog) -> np.ndarray:
        """What a model fits for this objective: each row's reward over the bound, in [0, 1]
        (the click itself for the click objective)."""
        if self.is_clicks:
            return log.clicked.astype(np.float64)
        return self.rewards(log, catalog) / self.bound(catalog)


CLICKS = Objective()
OUTCOMES = Objective(0.0, 1.0)
