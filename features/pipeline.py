"""The one path from (people, banners, times, history) to a feature matrix.

Training, batch ranking and the service all call ``candidate_features``; only how they
collect the rows differs.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .definition import BannerArrays, FeatureEncoder, StaffArrays
from .history import Events, History


def candidate_features(
    encoder: FeatureEncoder,
    history,
    staff_ids: Sequence[str],
    staff: StaffArrays,
    staff_idx: np.ndarray,
    banners: BannerArrays,
    banner_idx: np.ndarray,
    ts: np.ndarray,
    position: np.ndarray | None = None,
    dense: bool = False,
):
    """Features of rows (person staff_idx[i], banner banner_idx[i], time ts[i]).

    ``staff_ids``/``staff`` describe the people (ids and encoded attributes, aligned),
    ``banners`` the banners; ``history`` is a History or LayeredHistory of events strictly
    before each row's time is what the features see.
    """
    ids = np.asarray(staff_ids, dtype=object)[staff_idx]
    bids = np.asarray(banners.ids, dtype=object)[banner_idx]
    cats = np.asarray(banners.categories, dtype=object)[banner_idx]
    hist = history.query(ids, bids, cats, np.asarray(ts, dtype=np.float64))
    return encoder.transform(staff, staff_idx, banners, banner_idx, np.asarray(ts, dtype=np.float64), position, hist, dense)


def events_from_log(log, catalog) -> Events:
    """History events from an ImpressionLog (every impression, with its click)."""
    cat_of = {b.banner_id: b.category for b in catalog}
    banner_ids = np.asarray(log.banner_ids, dtype=object)
    categories = np.asarray([cat_of.get(b, "") for b in log.banner_ids], dtype=object)
    return Events(
        staff=np.asarray(log.staff_ids, dtype=object)[log.staff],
        banner=banner_ids[log.banner],
        category=categories[log.banner],
        ts=log.ts,
        clicked=log.clicked,
    )


def history_from_logs(logs: Sequence, catalog, half_life_days: float) -> History:
    """One History over several ImpressionLogs (e.g. older history plus the training log)."""
    parts = [events_from_log(log, catalog) for log in logs if log is not None and len(log)]
    if not parts:
        return History.empty(half_life_days)
    cat = lambda name: np.concatenate([np.asarray(getattr(p, name)) for p in parts])  # noqa: E731
    return History(Events(cat("staff"), cat("banner"), cat("category"), cat("ts"), cat("clicked")), half_life_days)


def profiles_for(staff_ids: Sequence[str], directory) -> list[Mapping[str, str]]:
    """The profile of each staff id from a staff directory (unknown ids get an empty one)."""
    return [directory.get(s).attributes for s in staff_ids]
