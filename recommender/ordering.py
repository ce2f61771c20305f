"""The greedy order: the operators' rule with the scores deciding what it leaves open.

Pinned banners come first, higher priority first (then by score); the others follow by
score, ties broken by priority; last, the order the candidates were given in (catalog
order). With every score equal it is the operators' own order. The Ranker, batch ranking,
training's validation, offline evaluation and the simulator all order through this
module, so there is one rule.

>>> import numpy as np
>>> greedy_order(np.array([0.1, 0.9, 0.5]), np.array([False, False, True]), np.array([0, 0, 0])).tolist()
[2, 1, 0]
"""
from __future__ import annotations

import numpy as np

PIN_OFFSET = 1e9


def _sort_keys(score: np.ndarray, pinned: np.ndarray, priority: np.ndarray, tiebreak: np.ndarray) -> tuple:
    """Keys for ``np.lexsort`` (last key first) that give the greedy order."""
    neg_priority = -np.asarray(priority, dtype=np.float64)
    neg_score = -np.asarray(score, dtype=np.float64)
    if not pinned.any():  # nothing pinned: by score, then priority, then as given
        return tiebreak, np.broadcast_to(neg_priority, neg_score.shape), neg_score
    # unpinned after pinned; within the pinned block priority decides first, elsewhere the score
    first = np.where(pinned, neg_priority, neg_score)
    second = np.where(pinned, neg_score, neg_priority)
    return tiebreak, second, first, np.broadcast_to(~pinned, neg_score.shape)


def greedy_order(score: np.ndarray, pinned: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Candidate indices in the greedy order, first shown first.

    ``score`` is (n,) for one request or (m, n) for m requests over the same n banners;
    ``pinned`` and ``priority`` are (n,)."""
    score = np.asarray(score, dtype=np.float64)
    pinned = np.asarray(pinned, dtype=bool)
    idx = np.broadcast_to(np.arange(score.shape[-1]), score.shape)
    return np.lexsort(_sort_keys(score, pinned, priority, idx), axis=-1)


def greedy_places(group: np.ndarray, score: np.ndarray, pinned: np.ndarray, priority: np.ndarray,
                  tiebreak: np.ndarray) -> np.ndarray:
    """0-based place of each row in its group's greedy order, for flat rows of many
    requests (``group`` = the request of each row, ``tiebreak`` = each row's catalog index)."""
    group = np.asarray(group)
    keys = _sort_keys(np.asarray(score, dtype=np.float64), np.asarray(pinned, dtype=bool), priority,
                      np.asarray(tiebreak))
    order = np.lexsort((*keys, group))
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.zeros(0, dtype=np.int64)
    place = np.empty(len(g), dtype=np.int64)
    place[order] = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    return place


def greedy_keys(score: np.ndarray, pinned: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """A sort key per banner (ascending = shown first) giving ``greedy_order``'s order: the
    banner's place in it, minus PIN_OFFSET for pinned banners (so that pinned banners
    still come first among keys mixed with random numbers in [-0.5, 0.5), as
    ``exploration.epsilon_greedy`` does). Shapes as ``greedy_order``."""
    order = greedy_order(score, pinned, priority)
    keys = np.empty(order.shape)
    np.put_along_axis(keys, order, np.broadcast_to(np.arange(order.shape[-1], dtype=np.float64), order.shape), axis=-1)
    keys -= np.where(np.asarray(pinned, dtype=bool), PIN_OFFSET, 0.0)
    return keys
