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

from recommender.ranker import CandidateRows

from .data import LoggedBandit
from .policies import candidate_rows


class RewardModel(Protocol):
    def click_probability(self, rows: CandidateRows, history, position: np.ndarray) -> np.ndarray: ...


def click_matrix(bandit: LoggedBandit, model: RewardModel, chunk_rows: int = 500_000) -> np.ndarray:
    """q (N, K): the model's click probability of every candidate row at every position."""
    fast = getattr(model, "bandit_click_matrix", None)
    if fast is not None:
        return fast(bandit)
    N, K = len(bandit.cand_banner), bandit.slots
    q = np.empty((N, K))
    history = bandit.history_for(model)
    for lo in range(0, N, chunk_rows):
        hi = min(lo + chunk_rows, N)
        rows = candidate_rows(bandit, slice(lo, hi))
        for k in range(K):
            p = np.asarray(model.click_probability(rows, history, np.full(hi - lo, k + 1)), dtype=np.float64)
            if p.shape != (hi - lo,) or not np.all(np.isfinite(p)):
                raise ValueError("the click model returned malformed or non-finite probabilities")
            q[lo:hi, k] = np.clip(p, 0.0, 1.0)
    return q


ATTRS = ("role", "school_level", "region")
HISTORY_FIELDS = ("ever_views_banner", "ever_clicked_banner", "views_person", "clicks_person", "views_category",
                  "clicks_category")


class LogisticClickModel:
    """A small position-aware logistic click model fitted on logged impressions.

    Implements RewardModel and Scorer on CandidateRows, and a vectorised path over a
    whole LoggedBandit (``bandit_click_matrix``, ``bandit_scores``) that encodes ids once
    per staff member and banner instead of once per candidate row."""

    version = "ope-logistic"

    def __init__(self, C: float = 1.0, prior_strength: float = 10.0, max_fit_rows: int = 400_000, seed: int = 0):
        self.C = C
        self.s = prior_strength
        self.max_fit_rows = max_fit_rows
        self.seed = seed
        self.attr_vocab: list[dict[str, int]] = [dict() for _ in ATTRS]
        self.banner_vocab: dict[str, int] = {}
        self.cat_vocab: dict[str, int] = {}
        self.max_pos = 1
        self.p0 = 0.05
        self.estimator: LogisticRegression | None = None

    # --- encoding -------------------------------------------------------------------------
    def _code(self, vocab: dict, value: str, grow: bool) -> int:
        code = vocab.get(value)
        if code is None:
            code = vocab.setdefault(value, len(vocab)) if grow else -1
        return code

    def _attr_codes(self, profiles, grow: bool) -> np.ndarray:
        cache: dict[int, tuple[int, ...]] = {}
        out = np.empty((len(profiles), len(ATTRS)), dtype=np.int64)
        for i, a in enumerate(profiles):
            c = cache.get(id(a))
            if c is None:
                c = cache[id(a)] = tuple(self._code(self.attr_vocab[j], a.get(name, "") or "", grow)
                                         for j, name in enumerate(ATTRS))
            out[i] = c
        return out

    def _banner_codes(self, banners, grow: bool) -> tuple[np.ndarray, np.ndarray]:
        ban = np.array([self._code(self.banner_vocab, b.banner_id, grow) for b in banners], dtype=np.int64)
        cat = np.array([self._code(self.cat_vocab, b.category, grow) for b in banners], dtype=np.int64)
        return ban, cat

    def _inputs_from_rows(self, rows: CandidateRows, history, grow: bool):
        attr = self._attr_codes(rows.attributes, grow)
        cache: dict[int, int] = {}
        uniq: list = []
        idx = np.empty(len(rows), dtype=np.int64)
        for i, b in enumerate(rows.banner):
            j = cache.get(id(b))
            if j is None:
                j = cache[id(b)] = len(uniq)
                uniq.append(b)
            idx[i] = j
        ban, cat = self._banner_codes(uniq, grow)
        h = history.query(list(rows.staff_id), [b.banner_id for b in rows.banner], [b.category for b in rows.banner],
                          np.asarray(rows.ts, dtype=np.float64))
        return attr, ban[idx], cat[idx], h

    def _inputs_from_bandit(self, bandit: LoggedBandit, flat: np.ndarray, grow: bool):
        req = bandit.cand_request[flat]
        staff = bandit.staff[req]
        used = np.unique(staff)
        attr_used = self._attr_codes([bandit.profiles[i] for i in used], grow)
        attr = attr_used[np.searchsorted(used, staff)]
        banners = bandit.catalog.banners
        ban_c, cat_c = self._banner_codes(banners, grow)
        b = bandit.cand_banner[flat]
        h = bandit.history
        if hasattr(h, "query_codes"):
            key = ("history", HISTORY_FIELDS, len(flat), int(flat[0]) if len(flat) else 0, int(flat[-1]) if len(flat) else 0)
            hist = bandit.cache.get(key)
            if hist is None:
                hs, hb, hc = h.codes([bandit.staff_ids[i] for i in used], [x.banner_id for x in banners],
                                     [x.category for x in banners])
                qs, qb = hs[np.searchsorted(used, staff)], hb[b]
                # queries sorted by person and banner hit the sorted event indexes in order (much faster)
                order = np.lexsort((qb, qs))
                got = h.query_codes(qs[order], qb[order], hc[b][order], bandit.ts[req][order])
                hist = {}
                for name in HISTORY_FIELDS:
                    v = got[name]
                    hist[name] = np.empty_like(v)
                    hist[name][order] = v
                bandit.cache[key] = hist
        else:
            hist = h.query([bandit.staff_ids[i] for i in staff], [banners[x].banner_id for x in b],
                           [banners[x].category for x in b], bandit.ts[req])
        return attr, ban_c[b], cat_c[b], hist

    def _design(self, attr, ban, cat, h, position):
        n = len(ban)
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
        s, p0 = self.s, self.p0
        person = np.log((h["clicks_person"] + s * p0) / (h["views_person"] + s))
        percat = np.log((h["clicks_category"] + s * np.exp(person)) / (h["views_category"] + s))
        num = [np.log1p(h["ever_views_banner"]), person - np.log(p0), percat - person]
        for j, x in enumerate(num):
            cols.append(np.full(n, off + j))
            rws.append(r)
            vals.append(x)
        off += len(num)
        ok = (h["ever_clicked_banner"] > 0) & (cat >= 0)
        cols.append(off + cat[ok])
        rws.append(r[ok])
        vals.append(np.ones(int(ok.sum())))
        off += nc
        n_features = getattr(self, "n_features", off)
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rws), np.concatenate(cols))), shape=(n, max(off, n_features)))

    # --- fit / predict ------------------------------------------------------------------------
    def _fit(self, inputs, position, clicked) -> "LogisticClickModel":
        clicked = np.asarray(clicked)
        if len(clicked) == 0 or clicked.min() == clicked.max():
            raise ValueError("cannot fit a click model: the logs have only clicks or only non-clicks")
        self.max_pos = int(max(np.max(position), 1))
        self.p0 = float(np.clip(clicked.mean(), 1e-4, 0.5))
        X = self._design(*inputs, position)
        self.n_features = X.shape[1]
        self.estimator = LogisticRegression(C=self.C, max_iter=300, tol=1e-5).fit(X, clicked)
        return self

    def fit(self, rows: CandidateRows, history, position: np.ndarray, clicked: np.ndarray) -> "LogisticClickModel":
        return self._fit(self._inputs_from_rows(rows, history, grow=True), position, clicked)

    def fit_bandit(self, bandit: LoggedBandit, request_mask: np.ndarray | None = None) -> "LogisticClickModel":
        """Fit on the bandit's logged impressions (at most ``max_fit_rows``, whole requests
        drawn at random: the click rate stays unbiased)."""
        filled = bandit.filled.copy()
        if request_mask is not None:
            filled &= np.asarray(request_mask, dtype=bool)[:, None]
        n_imp = int(filled.sum())
        if n_imp > self.max_fit_rows:
            keep = np.random.default_rng(self.seed).random(bandit.n) < self.max_fit_rows / n_imp
            filled &= keep[:, None]
        r, k = np.nonzero(filled)
        flat = bandit.shown[r, k]
        return self._fit(self._inputs_from_bandit(bandit, flat, grow=True), k + 1, bandit.click[r, k])

    def _logit(self, inputs, position) -> np.ndarray:
        return self.estimator.decision_function(self._design(*inputs, position))

    def click_probability(self, rows: CandidateRows, history, position: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros(0)
        return 1.0 / (1.0 + np.exp(-self._logit(self._inputs_from_rows(rows, history, False), position)))

    def score(self, rows: CandidateRows, history) -> np.ndarray:
        """Click logit at position 1 (the Scorer protocol: higher is better)."""
        if len(rows) == 0:
            return np.zeros(0)
        return self._logit(self._inputs_from_rows(rows, history, False), np.ones(len(rows), dtype=np.int64))

    def bandit_click_matrix(self, bandit: LoggedBandit, chunk_rows: int = 1_000_000) -> np.ndarray:
        """q (N, K) for every candidate row of the bandit at every position."""
        N, K = len(bandit.cand_banner), bandit.slots
        nb = max(len(self.banner_vocab), 1)
        pos_coef = self.estimator.coef_[0, nb:nb + self.max_pos]
        q = np.empty((N, K))
        for lo in range(0, N, chunk_rows):
            flat = np.arange(lo, min(lo + chunk_rows, N))
            z1 = self._logit(self._inputs_from_bandit(bandit, flat, False), np.ones(len(flat), dtype=np.int64))
            for k in range(K):
                zk = z1 - pos_coef[0] + pos_coef[min(k, self.max_pos - 1)]
                q[lo:lo + len(flat), k] = 1.0 / (1.0 + np.exp(-zk))
        return q

    def bandit_scores(self, bandit: LoggedBandit, chunk_rows: int = 1_000_000) -> np.ndarray:
        N = len(bandit.cand_banner)
        out = np.empty(N)
        for lo in range(0, N, chunk_rows):
            flat = np.arange(lo, min(lo + chunk_rows, N))
            out[lo:lo + len(flat)] = self._logit(self._inputs_from_bandit(bandit, flat, False), np.ones(len(flat), dtype=np.int64))
        return out


def fit_logistic(bandit: LoggedBandit, rows_mask: np.ndarray | None = None, **kw) -> LogisticClickModel:
    """Fit LogisticClickModel on the bandit's logged impressions (optionally some requests)."""
    return LogisticClickModel(**kw).fit_bandit(bandit, rows_mask)


CLICK_MODELS = ("project", "ope")


def fit_click_model(bandit: LoggedBandit, staff=None, catalog=None, log=None, history_logs=(),
                    kind: str = "project") -> tuple[RewardModel, str]:
    """The click model behind DM and DR, fitted on the evaluated logs (never on any truth).

    kind "project": the project's ``training.train.fit_click_model`` (the features/ code,
    as trained models use); "ope": this module's LogisticClickModel (several times faster
    on millions of candidate rows). Returns the model and a description for the report."""
    if kind not in CLICK_MODELS:
        raise ValueError(f"unknown click model {kind!r} ({', '.join(CLICK_MODELS)})")
    try:
        from training.train import fit_click_model as project_fit  # type: ignore[attr-defined]
    except ImportError:
        project_fit = None
    if kind == "project" and project_fit is not None and staff is not None and log is not None:
        model = project_fit(staff, catalog, log, history_logs=list(history_logs))
        return model, f"training.train.fit_click_model ({getattr(model, 'version', 'unsaved')})"
    return fit_logistic(bandit), "LogisticClickModel (training/ope/reward.py)"
