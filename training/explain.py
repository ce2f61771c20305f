"""A model's score split into named parts that add up to it exactly.

The rows are the ones the model scores (``features.pipeline``: the encoder, the same
history query, every candidate at the reference position), so an explanation can never
drift from the score it explains.

- **logistic**: each feature column's weight times its value, grouped by the encoder's
  blocks into readable parts (your role, role x category, your clicks on the category,
  popularity, freshness, ...), the intercept its own part ("baseline"). The numeric
  features are standardised, so their parts say how far this row is from an average
  training row.
- **gbm** (gradient-boosted trees): path contributions. Along the path a row takes
  through a tree, each split moves the node value (the mean of the training rows below
  the node) from parent to child; that move is credited to the split's feature. The moves
  of a path add up to its leaf value minus the root value, so the parts plus the baseline
  (the model's constant and every root value) add up to the score. The parts are checked
  against the model's own prediction, and a mismatch is refused, never shown.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from features.definition import NUMERIC_FEATURES, FeatureEncoder
from features.pipeline import history_features
from recommender.explain import ExplainError, ScorePart

TOLERANCE = 1e-9

# the numeric features by the part they belong to
_NUMERIC_GROUP = {
    "log_days_since_start": "freshness", "start_unknown": "freshness",
    "targeted": "targeting",
    "log_views_banner": "your history with this banner", "ever_clicked_banner": "your history with this banner",
    "log_ever_views_banner": "your history with this banner",
    "log_clicks_category": "your clicks on the category", "log_views_category": "your clicks on the category",
    "affinity_category": "your clicks on the category", "affinity_relative": "your clicks on the category",
    "log_ever_clicks_category": "your clicks on the category",
    "log_ever_views_category": "your clicks on the category",
    "affinity_category_all_time": "your clicks on the category",
    "affinity_person": "your clicking overall", "log_hours_since_click": "your clicking overall",
    "never_clicked": "your clicking overall",
    "global_ctr": "popularity", "log_global_views": "popularity",
    "interest_category": "your clicks on the category", "interest_relative": "your clicks on the category",
    "interest_category_all_time": "your clicks on the category", "interest_person": "your clicking overall",
}
assert set(_NUMERIC_GROUP) == set(NUMERIC_FEATURES), "every numeric feature belongs to a part"


class _Row:
    """What the texts of one row's parts say: the person, the banner and its history."""

    def __init__(self, attributes, banner, hist: dict, i: int, ts: float, attribute_names: Sequence[str]):
        self.attributes = attributes
        self.attribute_names = frozenset(attribute_names)
        self.banner = banner
        self.hist = {k: float(v[i]) for k, v in hist.items()}
        self.ts = ts

    def value(self, attr: str) -> str:
        return self.attributes.get(attr) or "unknown"

    def text(self, group: str) -> str:
        """The plain words for a part of this row: a noun phrase that reads after
        "because of" (the sentence puts it there)."""
        cat = self.banner.category
        h = self.hist
        if group in self.attribute_names:
            return f"your {group} being {self.value(group)}"
        if group == "baseline":
            return "the model's baseline"
        if group == "category":
            return f"{cat} banners in general"
        if group == "banner":
            return "this banner's own appeal"
        if group == "tags":
            tags = ", ".join(f"'{t}'" for t in self.banner.tags)
            return f"its tag{'s' if len(self.banner.tags) > 1 else ''} {tags}" if tags else "its having no tags"
        if group.endswith(" x category"):
            attr = group[:-len(" x category")]
            return f"how often people with {attr} {self.value(attr)} click {cat} banners"
        if group.endswith(" x banner"):
            attr = group[:-len(" x banner")]
            return f"how often people with {attr} {self.value(attr)} click this banner"
        if group == "your history with this banner":
            if h.get("ever_clicked_banner", 0) > 0:
                return "your earlier click on it"
            seen = int(h.get("ever_views_banner", 0))
            return f"your {seen} view{'' if seen == 1 else 's'} of it without a click" if seen else "its being new to you"
        if group == "your clicks on the category":
            clicks, views = int(h.get("ever_clicks_category", 0)), int(h.get("ever_views_category", 0))
            return f"your {clicks} click{'' if clicks == 1 else 's'} in {views} view{'' if views == 1 else 's'} of {cat} banners"
        if group == "your clicking overall":
            return "your not having clicked any banner yet" if np.isnan(h.get("hours_since_click", np.nan)) \
                else "how often you click banners in general"
        if group == "popularity":
            return "its popularity with everyone"
        if group == "freshness":
            if self.banner.start is None:
                return "its having no start date"
            days = round(max(self.ts - self.banner.start, 0.0) / 86400.0)
            return f"its being {days} day{'' if days == 1 else 's'} old"
        if group == "targeting":
            return "its being aimed at a group" if self.banner.is_targeted() else "its being meant for everyone"
        return group


def _parts(groups: Sequence[str], values: dict[str, float], row: _Row) -> list[ScorePart]:
    return [ScorePart(g, row.text(g), float(values.get(g, 0.0))) for g in groups]


def _linear_groups(enc: FeatureEncoder) -> tuple[np.ndarray, list[str]]:
    """For each column of the sparse matrix, the index of its part; and the parts in order."""
    cfg = enc.config
    order = ["baseline", *cfg.staff_attributes, "category", "banner", "tags"]
    for a in cfg.cross_attributes:
        order += [f"{a} x category", f"{a} x banner"]
    order += ["your history with this banner", "your clicks on the category", "your clicking overall",
              "popularity", "freshness", "targeting"]
    group_of_block = {f"attr:{a}": a for a in cfg.staff_attributes}
    group_of_block.update({"category": "category", "banner": "banner", "tags": "tags",
                           "completed x category": "your history with this banner", "log position": "baseline"})
    for a in cfg.cross_attributes:
        group_of_block[f"{a}x category"] = f"{a} x category"
        group_of_block[f"{a}x banner"] = f"{a} x banner"
        group_of_block[f"{a} x targeting"] = "targeting"
    for a, b in cfg.pair_crosses:  # a pair's taste for the category is its members' taste for it
        group_of_block[f"{a} x {b} x category"] = f"{a} x category"
        if f"{a} x category" not in order:
            order.insert(order.index("your history with this banner"), f"{a} x category")
    group_of_block["targeting x category"] = "targeting"
    group_of_block.update({f"{a} x tags": "tags" for a in cfg.tag_crosses})
    col_group = np.empty(enc.n_features_, dtype=np.int64)
    for block, (start, n) in enc.blocks_.items():
        if block == "numeric":
            for j, name in enumerate(enc.numeric_features_):
                col_group[start + j] = order.index(_NUMERIC_GROUP[name])
        else:
            col_group[start:start + n] = order.index(group_of_block[block])
    return col_group, order


def _texts(model, rows, hist: dict) -> list[_Row]:
    names = model.encoder.config.staff_attributes
    return [_Row(rows.attributes[i], rows.banner[i], hist, i, float(rows.ts[i]), names) for i in range(len(rows))]


def _features(enc: FeatureEncoder, rows, history, dense: bool):
    """The rows' feature matrix at the reference position, as the model scores them
    (``features.pipeline.candidate_features``), and the history counters it read."""
    n = len(rows)
    idx = np.arange(n)
    ts = np.asarray(rows.ts, dtype=np.float64)
    banners = enc.encode_banners(rows.banner)
    hist = history_features(history, list(rows.staff_id), range(n), banners, range(n), ts)
    return enc.transform(enc.encode_staff(rows.attributes), idx, banners, idx, ts, None, hist, dense), hist


def linear_parts(model, rows, history) -> list[list[ScorePart]]:
    """A logistic model's parts: weight times value of every column, summed per part."""
    enc: FeatureEncoder = model.encoder
    X, hist = _features(enc, rows, history, dense=False)
    coef = np.asarray(model.estimator.coef_, dtype=np.float64).ravel()
    col_group, order = _linear_groups(enc)
    out = []
    for i, row in enumerate(_texts(model, rows, hist)):
        lo, hi = X.indptr[i], X.indptr[i + 1]
        cols = X.indices[lo:hi]
        sums = np.bincount(col_group[cols], weights=X.data[lo:hi] * coef[cols], minlength=len(order))
        values = dict(zip(order, sums.tolist()))
        values["baseline"] += float(model.estimator.intercept_[0])
        out.append(_parts(order, values, row))
    return out


class _Tree:
    """One fitted tree of scikit-learn's gradient boosting, walked as its predictor walks
    it, with every node's value: a leaf's own, an inner node's the mean of its children
    weighted by their training rows."""

    def __init__(self, predictor, known_categories: np.ndarray, f_idx_map: np.ndarray):
        nodes = predictor.nodes
        self.is_leaf = nodes["is_leaf"].astype(bool).tolist()
        self.feature = nodes["feature_idx"].tolist()
        self.left = nodes["left"].tolist()
        self.right = nodes["right"].tolist()
        self.threshold = nodes["num_threshold"].tolist()
        self.missing_left = nodes["missing_go_to_left"].astype(bool).tolist()
        self.categorical = nodes["is_categorical"].astype(bool).tolist()
        self.bitset = nodes["bitset_idx"].tolist()
        self.left_categories = predictor.raw_left_cat_bitsets
        self.known_categories = known_categories
        self.f_idx_map = f_idx_map
        self.value = nodes["value"].astype(np.float64).tolist()
        count = nodes["count"].astype(np.float64).tolist()
        for k in reversed(self._preorder()):  # children before parents
            if not self.is_leaf[k]:
                lo, hi = self.left[k], self.right[k]
                total = count[lo] + count[hi]
                self.value[k] = (count[lo] * self.value[lo] + count[hi] * self.value[hi]) / total if total \
                    else self.value[lo]

    def _preorder(self) -> list[int]:
        out, stack = [], [0]
        while stack:
            k = stack.pop()
            out.append(k)
            if not self.is_leaf[k]:
                stack += [self.left[k], self.right[k]]
        return out

    def goes_left(self, k: int, x: float) -> bool:
        """The branch scikit-learn's predictor takes at node ``k`` for the value ``x``."""
        if x != x:  # nan: missing
            return self.missing_left[k]
        if self.categorical[k]:
            if x < 0:
                return self.missing_left[k]
            code = int(x) % 256
            if _in_bitset(self.left_categories, self.bitset[k], code):
                return True
            if _in_bitset(self.known_categories, int(self.f_idx_map[self.feature[k]]), code):
                return False
            return self.missing_left[k]  # a category unseen in training counts as missing
        return x <= self.threshold[k]

    def path(self, x: list[float]) -> list[tuple[int, float]]:
        """(feature, change of the node value) of each split on the row's path."""
        out, k = [], 0
        while not self.is_leaf[k]:
            child = self.left[k] if self.goes_left(k, x[self.feature[k]]) else self.right[k]
            out.append((self.feature[k], self.value[child] - self.value[k]))
            k = child
        return out


def tree_parts(model, rows, history) -> list[list[ScorePart]]:
    """A gradient-boosted model's parts: path contributions, grouped by feature."""
    enc: FeatureEncoder = model.encoder
    est = model.estimator
    n = len(rows)
    X, hist = _features(enc, rows, history, dense=True)
    cfg = enc.config
    order = ["baseline", *cfg.staff_attributes, "category", "banner",
             "your history with this banner", "your clicks on the category", "your clicking overall",
             "popularity", "freshness", "targeting"]
    # the dense columns: the attributes, category, banner, position, the numeric features
    feature_group = [order.index(a) for a in (*cfg.staff_attributes, "category", "banner")]
    feature_group.append(0)  # the position: every candidate sits at the reference position
    feature_group += [order.index(_NUMERIC_GROUP[f]) for f in enc.numeric_features_]
    known, f_idx_map = est._bin_mapper.make_known_categories_bitsets()
    trees = [_Tree(predictor, known, f_idx_map) for (predictor,) in est._predictors]
    contrib = np.zeros((n, len(order)))
    contrib[:, 0] = float(np.ravel(est._baseline_prediction)[0]) + sum(t.value[0] for t in trees)
    # the trees split the columns as the estimator's own preprocessing lays them out
    Xt, column = est._preprocess_X(X, reset=False), _source_columns(est, X.shape[1])
    for i, x in enumerate(Xt.tolist()):
        for tree in trees:
            for f, change in tree.path(x):
                contrib[i, feature_group[column[f]]] += change
    score = np.asarray(est.decision_function(X), dtype=np.float64)
    if not np.allclose(contrib.sum(axis=1), score, rtol=0.0, atol=TOLERANCE):
        raise ExplainError(f"model {model.version} (kind gbm): its path contributions do not add up to its scores "
                           "with this scikit-learn version; refusing to show them")
    return [_parts(order, dict(zip(order, contrib[i].tolist())), row) for i, row in enumerate(_texts(model, rows, hist))]


def _source_columns(est, n_features: int) -> np.ndarray:
    """For each column the trees split on, the column of the encoder's dense matrix it
    comes from: with categorical features, scikit-learn moves them first."""
    pre = getattr(est, "_preprocessor", None)
    if pre is None:
        return np.arange(n_features)
    out = np.full(n_features, -1, dtype=np.int64)
    for name, _, columns in pre.transformers_:
        if name in pre.output_indices_:
            cols = np.asarray(columns)
            out[pre.output_indices_[name]] = np.flatnonzero(cols) if cols.dtype == bool else cols
    if (out < 0).any():
        raise ExplainError("the gradient-boosted model lays out its columns in a way this version cannot explain")
    return out


def _in_bitset(bitsets: np.ndarray, row: int, value: int) -> bool:
    return bool((int(bitsets[row, value // 32]) >> (value % 32)) & 1)


def score_parts(model, rows, history) -> list[list[ScorePart]]:
    """The parts of ``model.score(rows, history)``, one list per row, each adding up to
    the row's score."""
    if len(rows) == 0:
        return []
    if model.kind == "logistic":
        return linear_parts(model, rows, history)
    if model.kind == "gbm":
        return tree_parts(model, rows, history)
    raise ExplainError(f"model {model.version} (kind {model.kind}) cannot split its scores into parts")
