"""The click model behind the direct method and doubly robust: q(i, b, k) = P(click |
request i's person and history, banner b at position k).

It is the project's click model (``training.fitting.fit_click_model``), fitted on the
evaluated logs and their history logs: evaluation sees the features trained models see,
through the one feature definition of features/. ``bandit_logits`` applies a model to a
whole LoggedBandit, for the click model's q and for model policies' scores alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from features.definition import BannerArrays, StaffArrays
from features.history import History
from training.artifact import ModelArtifact
from training.fitting import fit_click_model
from training.objective import Objective

from .data import LoggedBandit


def fit_reward_model(staff, catalog, log, history_logs=(), kind: str = "logistic",
                     objective: Objective | None = None) -> tuple[ModelArtifact, str]:
    """The click model behind DM and DR: the project's, fitted on the evaluated logs ``log``
    with their ``history_logs`` (never on any truth); ``kind`` is a model kind of
    training.train. With an ``objective`` other than clicks, the same model of its reward
    over its bound (training.objective). Returns the model and its description for the report."""
    model = fit_click_model(staff, catalog, log, history_logs=list(history_logs), kind=kind, objective=objective)
    what = "" if objective is None or objective.is_clicks else f", objective {objective.name}"
    return model, f"training.fitting.fit_click_model ({model.version}{what})"


def click_matrix(bandit: LoggedBandit, model: ModelArtifact, scale: float = 1.0) -> np.ndarray:
    """q (N, K): the model's click probability of every candidate row at every position;
    times ``scale`` (an objective's bound) for a reward model: its expected reward."""
    z = bandit_logits(bandit, model, range(1, bandit.slots + 1))
    q = scale / (1.0 + np.exp(-z))
    if not np.all(np.isfinite(q)):
        raise ValueError("the click model returned non-finite probabilities")
    return q


@dataclass
class _BanditCodes:
    """A bandit's people and banners encoded once: by the model's encoder, and by the
    click history the model's features see."""

    person: np.ndarray  # (n,) index into ``staff`` of each request's person
    staff: StaffArrays  # the distinct people of the requests
    banners: BannerArrays  # the catalog's banners
    history: History
    staff_code: np.ndarray  # the history's code of each distinct person
    banner_code: np.ndarray  # ... of each catalog banner
    category_code: np.ndarray  # ... of each catalog banner's category


def _bandit_codes(bandit: LoggedBandit, model: ModelArtifact) -> _BanditCodes:
    enc = model.encoder
    used, person = np.unique(bandit.staff, return_inverse=True)
    banners = bandit.catalog.banners
    history = bandit.history_for(model)
    s, b, c = history.codes([bandit.staff_ids[i] for i in used], [x.banner_id for x in banners],
                            [x.category for x in banners])
    return _BanditCodes(person.reshape(-1), enc.encode_staff([bandit.profiles[i] for i in used]),
                        enc.encode_banners(banners), history, s, b, c)


def bandit_logits(bandit: LoggedBandit, model: ModelArtifact, positions: Sequence[int],
                  chunk_rows: int = 100_000) -> np.ndarray:
    """(N, len(positions)) click logits of every candidate row of ``bandit`` at each of
    ``positions``, as ``model.click_probability`` computes them row by row (the same
    features/ functions), without its per-row objects: each person and banner is encoded
    once, each row's history queried once (per bandit and half-life), and only the
    position changes between columns.
    Rows go in time order (LoggedBandit.rows_by_time), in chunks of 100,000 rows: the
    history replays its events once for all of them, and a chunk's counters stay small."""
    codes = _bandit_codes(bandit, model)
    positions = model.encoder.positions(np.asarray(list(positions), dtype=np.int64))
    order = bandit.rows_by_time()
    out = np.empty((len(order), len(positions)))
    for lo in range(0, len(order), chunk_rows):
        rows = order[lo:lo + chunk_rows]
        hist = _rows_history(bandit, codes, order, lo, chunk_rows)
        out[rows] = _rows_logits(bandit, model, codes, rows, hist, positions)
    return out


def _rows_history(bandit: LoggedBandit, codes: _BanditCodes, order: np.ndarray, lo: int,
                  chunk_rows: int) -> dict[str, np.ndarray]:
    """The history counters of the rows order[lo:lo + chunk_rows], kept on the bandit: the
    query is most of the features' cost, and a model policy and the click model with the
    same half-life read the same counters (13 floats per candidate row)."""
    key = ("row history", codes.history.half_life_days, lo, chunk_rows)
    hist = bandit.cache.get(key)
    if hist is None:
        rows = order[lo:lo + chunk_rows]
        req = bandit.cand_request[rows]
        person, banner = codes.person[req], bandit.cand_banner[rows]
        hist = bandit.cache[key] = codes.history.query_codes(codes.staff_code[person], codes.banner_code[banner],
                                                             codes.category_code[banner], bandit.ts[req])
    return hist


def _rows_logits(bandit: LoggedBandit, model: ModelArtifact, codes: _BanditCodes, rows: np.ndarray,
                 hist: dict[str, np.ndarray], positions: np.ndarray) -> np.ndarray:
    req = bandit.cand_request[rows]
    person, banner, ts = codes.person[req], bandit.cand_banner[rows], bandit.ts[req]
    enc = model.encoder
    if model.dense:
        X = enc.transform(codes.staff, person, codes.banners, banner, ts, None, hist, dense=True)
        z = np.empty((len(rows), len(positions)))
        for j, k in enumerate(positions):
            X[:, enc.dense_position_column] = k
            z[:, j] = model.logit_from_matrix(X)
        return z
    coef = model.estimator.coef_.ravel()
    ref = enc.linear_logit(coef, float(model.estimator.intercept_[0]), codes.staff, person, codes.banners, banner, ts,
                           None, hist)
    # log(position) is one column: another position moves every logit by its weight times
    # the change of log(position)
    slope = coef[enc.blocks_["log position"][0]]
    return ref[:, None] + slope * (np.log(positions) - np.log(enc.reference_position))[None, :]
