"""Click models for the direct method and doubly robust: q(i, b, k) = P(click | request i's
person and history, banner b at position k).

``RewardModel`` is the protocol (training.artifact.ModelArtifact satisfies it). When
``training.train.fit_click_model`` is available the evaluation fits that (the project's
click model, features/ code); ``LogisticClickModel`` is this package's own small fallback
so that evaluation works on its own: a logistic regression on one-hot banner, position,
role x banner, school level x banner, region x category, and point-in-time history
features from features.history (views of the banner, whether it was clicked before by
category, the person's and the person-by-category smoothed click rates).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from features.history import History
from recommender.ranker import CandidateRows

from .data import LoggedBandit
from .policies import candidate_rows


class RewardModel(Protocol):
    def click_probability(self, rows: CandidateRows, history, position: np.ndarray) -> np.ndarray: ...


def click_matrix(bandit: LoggedBandit, model: RewardModel, chunk_rows: int = 500_000) -> np.ndarray:
    """q (N, K): the model's click probability of every candidate row at every position."""
    N, K = len(bandit.cand_banner), bandit.slots
    q = np.empty((N, K))
    for lo in range(0, N, chunk_rows):
        hi = min(lo + chunk_rows, N)
        rows = candidate_rows(bandit, slice(lo, hi))
        for k in range(K):
            p = np.asarray(model.click_probability(rows, bandit.history, np.full(hi - lo, k + 1)), dtype=np.float64)
            if p.shape != (hi - lo,) or not np.all(np.isfinite(p)):
                raise ValueError("the click model returned malformed or non-finite probabilities")
            q[lo:hi, k] = np.clip(p, 0.0, 1.0)
    return q


ATTRS = ("role", "school_level", "region")


class LogisticClickModel:
    """A small position-aware logistic click model fitted on logged impressions."""

    version = "ope-logistic"

    def __init__(self, C: float = 1.0, prior_strength: float = 10.0):
        self.C = C
        self.s = prior_strength
        self.attr_vocab: list[dict[str, int]] = [dict() for _ in ATTRS]
        self.banner_vocab: dict[str, int] = {}
        self.cat_vocab: dict[str, int] = {}
        self.max_pos = 1
        self.p0 = 0.05
        self.estimator: LogisticRegression | None = None

    # --- encoding -------------------------------------------------------------------------
    def _codes(self, rows: CandidateRows, grow: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cache: dict[int, tuple[int, ...]] = {}
        attr = np.empty((len(rows), len(ATTRS)), dtype=np.int64)
        for i, a in enumerate(rows.attributes):
            c = cache.get(id(a))
            if c is None:
                vals = []
                for j, name in enumerate(ATTRS):
                    v = a.get(name, "") or ""
                    voc = self.attr_vocab[j]
                    code = voc.get(v)
                    if code is None:
                        code = voc.setdefault(v, len(voc)) if grow else -1
                    vals.append(code)
                c = cache[id(a)] = tuple(vals)
            attr[i] = c
        bcache: dict[int, tuple[int, int]] = {}
        bc = np.empty((len(rows), 2), dtype=np.int64)
        for i, b in enumerate(rows.banner):
            c = bcache.get(id(b))
            if c is None:
                bi = self.banner_vocab.get(b.banner_id)
                if bi is None:
                    bi = self.banner_vocab.setdefault(b.banner_id, len(self.banner_vocab)) if grow else -1
                ci = self.cat_vocab.get(b.category)
                if ci is None:
                    ci = self.cat_vocab.setdefault(b.category, len(self.cat_vocab)) if grow else -1
                c = bcache[id(b)] = (bi, ci)
            bc[i] = c
        return attr, bc[:, 0], bc[:, 1]

    def _design(self, rows: CandidateRows, history: History, position: np.ndarray, grow: bool = False):
        n = len(rows)
        attr, ban, cat = self._codes(rows, grow)
        nb, nc = max(len(self.banner_vocab), 1), max(len(self.cat_vocab), 1)
        na = [max(len(v), 1) for v in self.attr_vocab]
        pos = np.clip(np.asarray(position, dtype=np.int64), 1, self.max_pos) - 1
        blocks = [  # (code per row or -1, width)
            (ban, nb),
            (pos, self.max_pos),
            (np.where((attr[:, 0] >= 0) & (ban >= 0), attr[:, 0] * nb + ban, -1), na[0] * nb),
            (np.where((attr[:, 1] >= 0) & (ban >= 0), attr[:, 1] * nb + ban, -1), na[1] * nb),
            (np.where((attr[:, 2] >= 0) & (cat >= 0), attr[:, 2] * nc + cat, -1), na[2] * nc),
        ]
        cols, vals, rws = [], [], []
        off = 0
        r = np.arange(n)
        for code, width in blocks:
            ok = code >= 0
            cols.append(code[ok] + off)
            rws.append(r[ok])
            vals.append(np.ones(int(ok.sum())))
            off += width
        ids = [b.banner_id for b in rows.banner]
        cats = [b.category for b in rows.banner]
        h = history.query(list(rows.staff_id), ids, cats, np.asarray(rows.ts, dtype=np.float64))
        s, p0 = self.s, self.p0
        person = np.log((h["clicks_person"] + s * p0) / (h["views_person"] + s))
        percat = np.log((h["clicks_category"] + s * np.exp(person)) / (h["views_category"] + s))
        num = [np.log1p(h["ever_views_banner"]), person - np.log(p0), percat - person]
        ever = h["ever_clicked_banner"]
        for j, x in enumerate(num):
            cols.append(np.full(n, off + j))
            rws.append(r)
            vals.append(x)
        off += len(num)
        ok = (ever > 0) & (cat >= 0)
        cols.append(off + cat[ok])
        rws.append(r[ok])
        vals.append(np.ones(int(ok.sum())))
        off += nc
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rws), np.concatenate(cols))), shape=(n, off))

    # --- fit / predict ------------------------------------------------------------------------
    def fit(self, rows: CandidateRows, history: History, position: np.ndarray, clicked: np.ndarray) -> "LogisticClickModel":
        clicked = np.asarray(clicked)
        self.max_pos = int(max(np.max(position), 1)) if len(position) else 1
        self.p0 = float(np.clip(clicked.mean(), 1e-4, 0.5)) if len(clicked) else 0.05
        X = self._design(rows, history, position, grow=True)
        self.n_features = X.shape[1]
        if clicked.min() == clicked.max():
            raise ValueError("cannot fit a click model: the logs have only clicks or only non-clicks")
        self.estimator = LogisticRegression(C=self.C, max_iter=300, tol=1e-5).fit(X, clicked)
        return self

    def _logit(self, rows, history, position) -> np.ndarray:
        X = self._design(rows, history, position)
        if X.shape[1] < self.n_features:
            X = sp.csr_matrix((X.data, X.indices, X.indptr), shape=(X.shape[0], self.n_features))
        return self.estimator.decision_function(X)

    def click_probability(self, rows: CandidateRows, history, position: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros(0)
        return 1.0 / (1.0 + np.exp(-self._logit(rows, history, position)))

    def score(self, rows: CandidateRows, history) -> np.ndarray:
        """Click logit at position 1 (the Scorer protocol: higher is better)."""
        if len(rows) == 0:
            return np.zeros(0)
        return self._logit(rows, history, np.ones(len(rows), dtype=np.int64))


def fit_logistic(bandit: LoggedBandit, rows_mask: np.ndarray | None = None, **kw) -> LogisticClickModel:
    """Fit LogisticClickModel on the bandit's logged impressions (optionally some requests)."""
    filled = bandit.filled.copy()
    if rows_mask is not None:
        filled &= np.asarray(rows_mask, dtype=bool)[:, None]
    r, k = np.nonzero(filled)
    flat = bandit.shown[r, k]
    rows = candidate_rows(bandit, flat)
    return LogisticClickModel(**kw).fit(rows, bandit.history, k + 1, bandit.click[r, k])


def fit_click_model(bandit: LoggedBandit, staff=None, catalog=None, log=None, history_logs=()) -> tuple[RewardModel, str]:
    """The click model behind DM and DR, fitted on the evaluated logs (never on any truth).

    Uses the project's ``training.train.fit_click_model`` when this build has it, else
    LogisticClickModel. Returns the model and a description for the report."""
    try:
        from training.train import fit_click_model as project_fit  # type: ignore[attr-defined]
    except ImportError:
        project_fit = None
    if project_fit is not None and staff is not None and log is not None:
        history = list(history_logs)
        model = project_fit(staff, catalog, log, history=history or None)
        return model, f"training.train.fit_click_model ({getattr(model, 'version', 'unsaved')})"
    return fit_logistic(bandit), "LogisticClickModel (training/ope/reward.py)"
