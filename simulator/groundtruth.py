"""The simulator's ground-truth click model and the means to score any ranking with it.

P(click | staff u, banner b, position k, history) = exam[k] * sigmoid(logit), where

    logit = base + quality[b] + role_cat[role_u, cat_b] + level_cat[level_u, cat_b]
            + region_cat[region_u, cat_b] + role_banner[role_u, b] + level_banner[level_u, b]
            + region_banner[region_u, b] + group_banner[role_u, level_u, b]
                                                                (observable structure)
            + interest[u, cat_b] + tendency[u]                  (hidden, per person)
            - fatigue * log1p(views of b by u before)           (history)
            - completion[b] * [u clicked b before]

With outcomes (simulator.outcomes), a click may be followed by the banner's outcome:

    P(outcome | click, u, b) = sigmoid(outcome_base[cat_b] + outcome_role[role_u, cat_b]
                                       + outcome_person[u, cat_b]) x [u did not have b's outcome before]

Only evaluation code reads this; nothing that learns or ranks may.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.pointintime import EventIndex


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class GroundTruth:
    staff_ids: list[str]
    banner_ids: list[str]
    role: np.ndarray
    level: np.ndarray
    region: np.ndarray
    banner_cat: np.ndarray
    base: float
    quality: np.ndarray
    role_cat: np.ndarray
    level_cat: np.ndarray
    region_cat: np.ndarray
    role_banner: np.ndarray
    level_banner: np.ndarray
    region_banner: np.ndarray
    interest: np.ndarray
    tendency: np.ndarray
    fatigue: float
    completion: np.ndarray
    exam_head: np.ndarray  # examination of positions 1..len
    exam_decay: float  # beyond the head, each position keeps this share of the previous
    group_banner: np.ndarray | None = None  # role x level x banner effects beyond single attributes (or none)
    # the outcome after a click (None: a province without outcomes): logits per category
    # (-inf: none), per role and category, per person and category
    outcome_base: np.ndarray | None = None
    outcome_role: np.ndarray | None = None
    outcome_person: np.ndarray | None = None

    def __post_init__(self):
        self.staff_index = {s: i for i, s in enumerate(self.staff_ids)}
        self.banner_index = {b: i for i, b in enumerate(self.banner_ids)}

    # ---- the click model -------------------------------------------------------------
    def examination(self, position) -> np.ndarray:
        position = np.asarray(position, dtype=np.int64)
        head = len(self.exam_head)
        k = np.clip(position, 1, head) - 1
        extra = np.maximum(position - head, 0)
        return self.exam_head[k] * self.exam_decay**extra

    def observable_logit(self, u, b) -> np.ndarray:
        """The part of the logit that role, school level, region and the banner explain."""
        u = np.asarray(u, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        c = self.banner_cat[b]
        r, l, g = self.role[u], self.level[u], self.region[u]
        out = (
            self.base + self.quality[b] + self.role_cat[r, c] + self.level_cat[l, c] + self.region_cat[g, c]
            + self.role_banner[r, b] + self.level_banner[l, b] + self.region_banner[g, b]
        )
        if self.group_banner is not None:
            out = out + self.group_banner[r, l, b]
        return out

    def hidden_logit(self, u, b) -> np.ndarray:
        u = np.asarray(u, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        return self.interest[u, self.banner_cat[b]] + self.tendency[u]

    def history_logit(self, b, views, clicked_before) -> np.ndarray:
        b = np.asarray(b, dtype=np.int64)
        return -self.fatigue * np.log1p(np.asarray(views, dtype=np.float64)) - self.completion[b] * np.asarray(clicked_before, dtype=np.float64)

    def attractiveness(self, u, b, views=0, clicked_before=0) -> np.ndarray:
        """P(click | examined)."""
        return sigmoid(self.observable_logit(u, b) + self.hidden_logit(u, b) + self.history_logit(b, views, clicked_before))

    def click_probability(self, u, b, position, views=0, clicked_before=0) -> np.ndarray:
        return self.examination(position) * self.attractiveness(u, b, views, clicked_before)

    def outcome_probability(self, u, b, completed_before=0) -> np.ndarray:
        """P(outcome | click): 0 in a province without outcomes, and once the person had it."""
        u = np.asarray(u, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        if self.outcome_base is None:
            return np.zeros(np.broadcast(u, b).shape)
        c = self.banner_cat[b]
        with np.errstate(over="ignore"):
            p = sigmoid(self.outcome_base[c] + self.outcome_role[self.role[u], c] + self.outcome_person[u, c])
        return np.where(np.asarray(completed_before) > 0, 0.0, p)

    def hidden_variance_share(self) -> float:
        """Share of the variance of the attractiveness logit across staff (for a given banner,
        before any history) that the hidden per-person part explains, averaged over banners."""
        n = len(self.staff_ids)
        rng = np.random.default_rng(0)
        u = rng.choice(n, size=min(n, 20000), replace=False)
        shares = []
        for b in range(len(self.banner_ids)):
            bb = np.full(len(u), b)
            obs = self.observable_logit(u, bb)
            hid = self.hidden_logit(u, bb)
            total = np.var(obs + hid)
            shares.append(np.var(hid) / total if total > 0 else 0.0)
        return float(np.mean(shares))

    # ---- scoring rankings ----------------------------------------------------------
    def staff_idx(self, staff_ids) -> np.ndarray:
        return np.array([self.staff_index[s] for s in staff_ids], dtype=np.int64)

    def banner_idx(self, banner_ids) -> np.ndarray:
        return np.array([self.banner_index[b] for b in banner_ids], dtype=np.int64)

    def expected_clicks(self, u, ranked, views, clicked_before) -> np.ndarray:
        """True expected clicks per request of rankings.

        u: (n,) staff indices; ranked: (n, K) banner indices best first, -1 where no banner;
        views, clicked_before: (n, K) the person's history with each ranked banner.
        """
        ranked = np.asarray(ranked, dtype=np.int64)
        n, k = ranked.shape
        valid = ranked >= 0
        b = np.where(valid, ranked, 0)
        uu = np.repeat(np.asarray(u, dtype=np.int64)[:, None], k, axis=1)
        p = self.click_probability(uu, b, np.arange(1, k + 1)[None, :], views, clicked_before)
        return np.where(valid, p, 0.0).sum(axis=1)

    # ---- persistence ---------------------------------------------------------------
    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        arrays = {k: getattr(self, k) for k in (
            "role", "level", "region", "banner_cat", "quality", "role_cat", "level_cat", "region_cat",
            "role_banner", "level_banner", "region_banner", "interest", "tendency", "completion", "exam_head")}
        if self.group_banner is not None:
            arrays["group_banner"] = self.group_banner
        if self.outcome_base is not None:
            arrays.update(outcome_base=self.outcome_base, outcome_role=self.outcome_role,
                          outcome_person=self.outcome_person)
        np.savez_compressed(folder / "truth.npz", **arrays)
        meta = {"staff_ids_file": "staff.csv", "banner_ids": self.banner_ids, "base": self.base,
                "fatigue": self.fatigue, "exam_decay": self.exam_decay}
        (folder / "truth.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> "GroundTruth":
        """Load the ground truth written by ``recommender simulate`` into ``folder``."""
        folder = Path(folder)
        meta = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
        with np.load(folder / "truth.npz") as z:
            arrays = {k: z[k] for k in z.files}
        with open(folder / meta["staff_ids_file"], encoding="utf-8") as f:
            next(f)
            staff_ids = [line.split(",", 1)[0] for line in f if line.strip()]
        return cls(staff_ids=staff_ids, banner_ids=meta["banner_ids"], base=meta["base"], fatigue=meta["fatigue"],
                   exam_decay=meta["exam_decay"], **arrays)


class HistoryState:
    """Each person's views and clicks of each banner strictly before a time, from logs.

    The simulator's fatigue and completion are functions of exactly this state, so the
    true click probability of any banner for a logged request can be recomputed from logs.
    """

    def __init__(self, staff_idx: np.ndarray, banner_idx: np.ndarray, ts: np.ndarray, clicked: np.ndarray, n_banners: int,
                 outcome: np.ndarray | None = None):
        keys = np.asarray(staff_idx, dtype=np.int64) * n_banners + np.asarray(banner_idx, dtype=np.int64)
        self.n_banners = n_banners
        self.views = EventIndex(keys, ts)
        c = np.asarray(clicked) > 0
        self.clicks = EventIndex(keys[c], np.asarray(ts)[c])
        o = np.zeros(len(keys), dtype=bool) if outcome is None else np.asarray(outcome) > 0
        self.outcomes = EventIndex(keys[o], np.asarray(ts)[o])

    def completed_at(self, u: np.ndarray, b: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Whether the person had the banner's outcome on an impression before ``ts`` (0/1)."""
        keys = np.asarray(u, dtype=np.int64) * self.n_banners + np.asarray(b, dtype=np.int64)
        return (self.outcomes.count_before(keys, ts) > 0).astype(np.int64)

    def at(self, u: np.ndarray, b: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = np.asarray(u, dtype=np.int64) * self.n_banners + np.asarray(b, dtype=np.int64)
        return self.views.count_before(keys, ts), (self.clicks.count_before(keys, ts) > 0).astype(np.int64)
