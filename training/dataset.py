"""Training rows from staff + banners + impressions, with point-in-time history features."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.definition import BannerArrays, FeatureEncoder, StaffArrays
from features.pipeline import history_features, history_from_logs, profiles_for


@dataclass
class LogContext:
    """Everything the features need about one ImpressionLog, encoded once. The history of
    every row is queried once (it is what costs) and reused by every fit and metric."""

    log: object
    staff: StaffArrays  # aligned with log.staff_ids
    banners: BannerArrays  # aligned with log.banner_ids
    history: object
    _hist_rows: np.ndarray | None = None
    _hist: dict | None = None
    label: np.ndarray | None = None  # what a model fits per row (training.objective); None: the click

    @property
    def y(self) -> np.ndarray:
        """Each row's label: the objective's (``label``), else the click."""
        return self.log.clicked if self.label is None else self.label

    def prepare(self, rows: np.ndarray) -> None:
        """Query the history of these rows once (what costs); later calls reuse them."""
        rows = np.unique(rows)
        log = self.log
        self._hist_rows = rows
        self._hist = history_features(self.history, log.staff_ids, log.staff[rows], self.banners, log.banner[rows], log.ts[rows])

    def history_rows(self, rows: np.ndarray) -> dict:
        rows = np.asarray(rows)
        if self._hist_rows is not None:
            at = np.searchsorted(self._hist_rows, rows)
            at = np.minimum(at, len(self._hist_rows) - 1)
            if len(rows) and np.array_equal(self._hist_rows[at], rows):
                return {k: v[at] for k, v in self._hist.items()}
        log = self.log
        return history_features(self.history, log.staff_ids, log.staff[rows], self.banners, log.banner[rows], log.ts[rows])

    def features(self, encoder: FeatureEncoder, rows: np.ndarray, position=None, dense=False):
        log = self.log
        return encoder.transform(self.staff, log.staff[rows], self.banners, log.banner[rows], log.ts[rows], position,
                                 self.history_rows(rows), dense)


def log_context(encoder: FeatureEncoder, directory, catalog, log, history_logs=()) -> LogContext:
    """Encode the people and banners of ``log``; build the history of ``history_logs`` + ``log``.

    Every banner of the log must be in the catalog: ``cold_start_catalog`` adds those it
    does not hold as the service ranks them."""
    staff = encoder.encode_staff(profiles_for(log.staff_ids, directory))
    banners = encoder.encode_banners([catalog.get(b) for b in log.banner_ids])
    history = history_from_logs([*history_logs, log], catalog, encoder.config.half_life_days)
    return LogContext(log, staff, banners, history)


class TrainingDataError(ValueError):
    """A log that training cannot use, said so that data staff know what to do."""


def require_clicks(clicked: np.ndarray, what: str) -> None:
    """A click model is fitted on clicks and non-clicks: refuse rows without both."""
    n = len(clicked)
    if n == 0:
        raise TrainingDataError(f"no impressions {what}: give a log with impressions")
    c = int(np.sum(clicked))
    if c == 0 or c == n:
        raise TrainingDataError(f"the {n:,} impressions {what} have {'no click' if c == 0 else 'only clicks'}: "
                                "a click model needs clicks and non-clicks; give a longer log")


def require_rewards(label: np.ndarray, what: str, objective: str) -> None:
    """A model of an objective other than clicks needs rows with and without its reward."""
    n, positive = len(label), int(np.count_nonzero(label > 0))
    if n and positive == 0:
        raise TrainingDataError(f"the {n:,} impressions {what} have no {objective}: a model of {objective} needs "
                                "impressions with an outcome (the impressions' outcome field; see "
                                "docs/data-contracts.md); give a log that records outcomes, or train for clicks")
    if n and np.all(label >= 1):
        raise TrainingDataError(f"the {n:,} impressions {what} all have the largest reward: give a longer log")


def time_split(log, holdout_days: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Rows before / from the cut (the last ``holdout_days`` of the log are held out).
    A log too short to hold them out, or with nothing to fit before them, raises
    TrainingDataError."""
    require_clicks(log.clicked, "to train on")
    first, last = float(log.ts.min()), float(log.ts.max())
    cut = last - holdout_days * 86400.0
    train = np.flatnonzero(log.ts < cut)
    valid = np.flatnonzero(log.ts >= cut)
    if len(train) == 0:
        raise TrainingDataError(
            f"the log spans {(last - first) / 3600:.1f} hours, too little time to hold out {holdout_days:g} day(s) "
            f"for validation: give a log that spans more than {holdout_days:g} day(s), or hold out less (--holdout-days)")
    require_clicks(log.clicked[train], "before the held-out days")
    return train, valid, cut


def downsample_negatives(rows: np.ndarray, clicked: np.ndarray, max_rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Keep every click (every row whose label is above 0) and a random share of the others
    so at most ``max_rows`` remain; kept others are weighted by the inverse of that share so
    probabilities stay calibrated."""
    if len(rows) <= max_rows:
        return rows, np.ones(len(rows))
    pos = rows[clicked[rows] > 0]
    neg = rows[clicked[rows] == 0]
    rate = max(min((max_rows - len(pos)) / max(len(neg), 1), 1.0), 0.01)
    keep = neg[rng.random(len(neg)) < rate]
    out = np.sort(np.concatenate([pos, keep]))
    w = np.where(clicked[out] > 0, 1.0, 1.0 / rate)
    return out, w
