"""The one path from (people, banners, times, history) to a feature matrix.

Training, batch ranking and the service all call ``candidate_features``; only how they
collect the rows differs.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .definition import BannerArrays, FeatureEncoder, StaffArrays
from .history import Coded, Events, History


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
    ``banners`` the banners; ``history`` (a History, or anything with its ``query``, such
    as the service's running counters) of events strictly before each row's time is
    what the features see.
    """
    hist = history_features(history, staff_ids, staff_idx, banners, banner_idx, ts)
    return encoder.transform(staff, staff_idx, banners, banner_idx, np.asarray(ts, dtype=np.float64), position, hist, dense)


def history_features(history, staff_ids: Sequence[str], staff_idx: np.ndarray, banners: BannerArrays,
                     banner_idx: np.ndarray, ts: np.ndarray) -> dict[str, np.ndarray]:
    """The history counters of each row (strictly before its time): the input of the
    numeric features. Split out so that training can query every row once and reuse it.
    ``staff_idx`` and ``banner_idx`` index the ids; ``range(n)`` for both says the rows are
    the ids as given (one request's candidates), which spares the gathering."""
    ts = np.asarray(ts, dtype=np.float64)
    if isinstance(history, History):
        # look the distinct ids up once, then index: training queries millions of rows
        s_codes, b_codes, c_codes = history.codes(list(staff_ids), list(banners.ids), list(banners.categories))
        return history.query_codes(s_codes[staff_idx], b_codes[banner_idx], c_codes[banner_idx], ts)
    if isinstance(staff_idx, range) and isinstance(banner_idx, range) and staff_idx == banner_idx == range(len(ts)):
        # rows aligned with the ids as given (the service's one request)
        return history.query(staff_ids, banners.ids, banners.categories, ts)
    si, bi = np.asarray(staff_idx).tolist(), np.asarray(banner_idx).tolist()
    ids = [staff_ids[i] for i in si]
    bids = [banners.ids[i] for i in bi]
    cats = [banners.categories[i] for i in bi]
    return history.query(ids, bids, cats, ts)


def request_history(history, staff_id: str, banners: BannerArrays, ts: float) -> dict[str, np.ndarray]:
    """``history_features`` of one request: one person's rows, one per banner, at one time."""
    return history.query_person(staff_id, banners.ids, banners.categories, float(ts))


def events_from_log(log, catalog, unknown_category: str = "") -> Events:
    """History events from an ImpressionLog (every impression, with its click)."""
    return events_from_logs([log], catalog, unknown_category)


def events_from_logs(logs: Sequence, catalog, unknown_category: str = "") -> Events:
    """History events from several ImpressionLogs, ids kept coded (no per-row lookups).
    A banner the catalog does not hold gets ``unknown_category`` (the service passes the
    category it gives unknown candidates, so both count under one category)."""
    cat_of = {b.banner_id: b.category for b in catalog}
    staff_vocab: dict[str, int] = {}
    banner_vocab: dict[str, int] = {}
    parts = []
    for log in logs:
        s_map = np.array([staff_vocab.setdefault(s, len(staff_vocab)) for s in log.staff_ids], dtype=np.int64)
        b_map = np.array([banner_vocab.setdefault(b, len(banner_vocab)) for b in log.banner_ids], dtype=np.int64)
        parts.append((s_map[log.staff] if len(log) else np.zeros(0, np.int64),
                      b_map[log.banner] if len(log) else np.zeros(0, np.int64), log.ts, log.clicked))
    banner_ids = list(banner_vocab)
    cat_vocab: dict[str, int] = {}
    cat_of_banner = np.array([cat_vocab.setdefault(cat_of.get(b, unknown_category), len(cat_vocab)) for b in banner_ids], dtype=np.int64)
    cat = lambda i: np.concatenate([p[i] for p in parts]) if parts else np.zeros(0)  # noqa: E731
    b_codes = cat(1).astype(np.int64)
    return Events(
        staff=Coded(list(staff_vocab), cat(0).astype(np.int64)),
        banner=Coded(banner_ids, b_codes),
        category=Coded(list(cat_vocab), cat_of_banner[b_codes] if len(b_codes) else np.zeros(0, np.int64)),
        ts=cat(2).astype(np.float64),
        clicked=cat(3),
    )


def history_from_logs(logs: Sequence, catalog, half_life_days: float) -> History:
    """One History over several ImpressionLogs (e.g. older history plus the training log)."""
    logs = [log for log in logs if log is not None and len(log)]
    if not logs:
        return History.empty(half_life_days)
    return History(events_from_logs(logs, catalog), half_life_days)


def profiles_for(staff_ids: Sequence[str], directory) -> list[Mapping[str, str]]:
    """The profile of each staff id from a staff directory (unknown ids get an empty one)."""
    return [directory.get(s).attributes for s in staff_ids]
