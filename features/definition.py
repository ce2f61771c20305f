"""The feature definition: one encoder used by training, batch ranking and the service.

Inputs are a person's attributes, a banner (the object, duck-typed: banner_id, category,
tags, target, start; so a banner the model never saw still gets category, tags, targeting
and age), the request time, the position (training only: scoring uses a fixed reference
position) and the person's click history strictly before the request (features.history).
Outputs are a sparse matrix for linear models (one-hots with an unknown bucket, crosses,
numeric history) and a dense matrix for tree models (integer codes and the same numeric
history).

Position bias: position is a feature while fitting, so the model attributes the lift of
position 1 to the position and not to the banner that used to sit there; scoring puts
every candidate at the same reference position, so scores compare attractiveness only.
For linear models position enters as one column, log(position): the power-law examination
curve (examination ~ position^-a, so log examination is linear in log position). One
slope is identified by any two positions, so even logs where one banner always holds
position 1 (position 1 and that banner confounded) still separate the two; a one-hot per
position could not.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

DAY = 86400.0
STANDARD_CATEGORIES = ("policy", "info", "custom", "survey", "event")


@dataclass(frozen=True)
class FeatureConfig:
    """What the encoder uses. The staff attributes are configurable per deployment."""

    staff_attributes: tuple[str, ...] = ("role", "school_level", "region")
    cross_attributes: tuple[str, ...] = ("role", "school_level", "region")  # crossed with category and banner
    half_life_days: float = 7.0
    max_position: int = 10
    reference_position: int = 1
    prior_strength: float = 10.0  # pseudo-views of the smoothed click rates

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        d = dict(d)
        for k in ("staff_attributes", "cross_attributes"):
            d[k] = tuple(d[k])
        return cls(**d)


NUMERIC_FEATURES = (
    "log_days_since_start", "start_unknown", "targeted",
    "log_views_banner", "ever_clicked_banner", "log_clicks_category", "log_views_category",
    "affinity_category", "affinity_person", "affinity_relative", "log_hours_since_click", "never_clicked",
    "log_ever_views_banner", "log_ever_clicks_category", "log_ever_views_category", "affinity_category_all_time",
    "global_ctr", "log_global_views",
)


def _vocab(values) -> dict[str, int]:
    """Index 0 is the unknown bucket."""
    out: dict[str, int] = {}
    for v in values:
        if v not in out:
            out[v] = len(out) + 1
    return out


def smoothed_rate(clicks, views, base_rate: float, strength: float):
    """Click rate shrunk towards ``base_rate`` by ``strength`` pseudo-views: the popularity
    score, and the person's own rates in the history features."""
    return (np.asarray(clicks) + strength * base_rate) / (np.asarray(views) + strength)


def _logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


@dataclass
class BannerArrays:
    """Per-banner encodings (one entry per banner object given)."""

    ids: list[str]
    categories: list[str]
    banner_code: np.ndarray
    category_code: np.ndarray
    tag_codes: list[np.ndarray]
    targeted: np.ndarray
    start: np.ndarray  # nan when open


@dataclass
class StaffArrays:
    codes: dict[str, np.ndarray]  # attribute -> code per person (0 = unknown)


class FeatureEncoder:
    """Fitted vocabularies plus the transform. Fit on the staff directory's attribute values
    and the catalog; values seen later fall into the unknown bucket."""

    def __init__(self, config: FeatureConfig | None = None):
        self.config = config or FeatureConfig()

    # ---- fitting -------------------------------------------------------------------
    def fit(self, staff_attribute_values: Mapping[str, Sequence[str]], banners: Sequence, base_rate: float) -> "FeatureEncoder":
        cfg = self.config
        self.attr_vocab_ = {a: _vocab(sorted(set(staff_attribute_values.get(a, ())) - {""})) for a in cfg.staff_attributes}
        self.banner_vocab_ = _vocab(b.banner_id for b in banners)
        self.category_vocab_ = _vocab(list(STANDARD_CATEGORIES) + sorted({b.category for b in banners} - set(STANDARD_CATEGORIES)))
        self.tag_vocab_ = _vocab(sorted({t for b in banners for t in b.tags}))
        self.base_rate_ = float(min(max(base_rate, 1e-4), 0.5))
        self._layout()
        return self

    def fit_scale(self, numeric: np.ndarray) -> "FeatureEncoder":
        """Centre and scale of each numeric feature (from a sample of training rows), applied
        in the sparse matrix: linear solvers converge far faster on standardised columns."""
        numeric = np.asarray(numeric, dtype=np.float64)
        self.numeric_mean_ = numeric.mean(axis=0) if len(numeric) else np.zeros(numeric.shape[1])
        sd = numeric.std(axis=0) if len(numeric) else np.ones(numeric.shape[1])
        self.numeric_scale_ = np.where(sd > 1e-9, sd, 1.0)
        return self

    def _layout(self) -> None:
        cfg = self.config
        sizes: list[tuple[str, int]] = []
        for a in cfg.staff_attributes:
            sizes.append((f"attr:{a}", len(self.attr_vocab_[a]) + 1))
        nb, nc = len(self.banner_vocab_) + 1, len(self.category_vocab_) + 1
        sizes += [("category", nc), ("banner", nb), ("tags", len(self.tag_vocab_) + 1)]
        for a in cfg.cross_attributes:
            na = len(self.attr_vocab_[a]) + 1
            sizes += [(f"{a}x category", na * nc), (f"{a}x banner", na * nb)]
        sizes += [("completed x category", nc), ("log position", 1), ("numeric", len(NUMERIC_FEATURES))]
        self.blocks_ = {}
        off = 0
        for name, n in sizes:
            self.blocks_[name] = (off, n)
            off += n
        self.n_features_ = off

    # ---- per-object encodings (shared by every caller) -----------------------------
    def encode_staff(self, profiles: Sequence[Mapping[str, str]]) -> StaffArrays:
        codes = {}
        for a in self.config.staff_attributes:
            v = self.attr_vocab_[a]
            codes[a] = np.fromiter((v.get(p.get(a) or "", 0) for p in profiles), dtype=np.int64, count=len(profiles))
        return StaffArrays(codes)

    def encode_banners(self, banners: Sequence) -> BannerArrays:
        return BannerArrays(
            ids=[b.banner_id for b in banners],
            categories=[b.category for b in banners],
            banner_code=np.fromiter((self.banner_vocab_.get(b.banner_id, 0) for b in banners), dtype=np.int64, count=len(banners)),
            category_code=np.fromiter((self.category_vocab_.get(b.category, 0) for b in banners), dtype=np.int64, count=len(banners)),
            tag_codes=[np.array([self.tag_vocab_.get(t, 0) for t in b.tags], dtype=np.int64) for b in banners],
            targeted=np.array([any(len(v) > 0 for v in b.target.values()) for b in banners], dtype=np.float64),
            start=np.array([np.nan if b.start is None else b.start for b in banners], dtype=np.float64),
        )

    # ---- numeric features from history ---------------------------------------------
    def numeric(self, banner_rows: BannerArrays, banner_idx: np.ndarray, ts: np.ndarray, hist: Mapping[str, np.ndarray]) -> np.ndarray:
        a, m = self.config.prior_strength, self.base_rate_
        start = banner_rows.start[banner_idx]
        age_days = np.where(np.isnan(start), 0.0, np.maximum(ts - np.nan_to_num(start), 0.0) / DAY)
        p_cat = _logit(smoothed_rate(hist["clicks_category"], hist["views_category"], m, a))
        p_all = _logit(smoothed_rate(hist["clicks_person"], hist["views_person"], m, a))
        hours = hist["hours_since_click"]
        never = np.isnan(hours)
        g = _logit(self.popularity(hist))
        g0 = _logit(m)
        cols = [
            np.log1p(age_days), np.isnan(start).astype(np.float64), banner_rows.targeted[banner_idx],
            np.log1p(hist["views_banner"]), hist["ever_clicked_banner"], np.log1p(hist["clicks_category"]),
            np.log1p(hist["views_category"]), p_cat, p_all, p_cat - p_all,
            np.where(never, 0.0, np.log1p(np.nan_to_num(hours))), never.astype(np.float64),
            np.log1p(hist["ever_views_banner"]), np.log1p(hist["ever_clicks_category"]), np.log1p(hist["ever_views_category"]),
            _logit(smoothed_rate(hist["ever_clicks_category"], hist["ever_views_category"], m, a)) - g0,
            g, np.log1p(hist["global_views"]),
        ]
        return np.column_stack(cols) if len(ts) else np.zeros((0, len(NUMERIC_FEATURES)))

    def popularity(self, hist: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each banner's smoothed global click rate before the request: the popularity order."""
        return smoothed_rate(hist["global_clicks"], hist["global_views"], self.base_rate_, self.config.prior_strength)

    # ---- the transform -------------------------------------------------------------
    def transform(self, staff: StaffArrays, staff_idx: np.ndarray, banners: BannerArrays, banner_idx: np.ndarray,
                  ts: np.ndarray, position: np.ndarray | None, hist: Mapping[str, np.ndarray], dense: bool = False):
        """Rows = (person staff_idx[i] of ``staff``, banner banner_idx[i] of ``banners``, ts[i]).

        ``position`` None means scoring: every row at the reference position. ``hist`` is
        the history query for these rows (History.query). Returns a CSR matrix, or with
        dense=True the tree-model matrix.
        """
        n = len(ts)
        cfg = self.config
        pos = np.full(n, cfg.reference_position) if position is None else np.asarray(position)
        pos = np.clip(pos, 1, cfg.max_position)
        num = self.numeric(banners, banner_idx, ts, hist)
        bcode = banners.banner_code[banner_idx]
        ccode = banners.category_code[banner_idx]
        acodes = {a: staff.codes[a][staff_idx] for a in cfg.staff_attributes}
        if dense:
            cols = [acodes[a] for a in cfg.staff_attributes] + [ccode, bcode, pos]
            return np.column_stack([np.column_stack(cols).astype(np.float64), num]) if n else np.zeros((0, len(cols) + num.shape[1]))
        nc = len(self.category_vocab_) + 1
        nb = len(self.banner_vocab_) + 1
        col_blocks = []
        for a in cfg.staff_attributes:
            col_blocks.append(self.blocks_[f"attr:{a}"][0] + acodes[a])
        col_blocks.append(self.blocks_["category"][0] + ccode)
        col_blocks.append(self.blocks_["banner"][0] + bcode)
        for a in cfg.cross_attributes:
            col_blocks.append(self.blocks_[f"{a}x category"][0] + acodes[a] * nc + ccode)
            col_blocks.append(self.blocks_[f"{a}x banner"][0] + acodes[a] * nb + bcode)
        one_hot_cols = np.column_stack(col_blocks)  # (n, n_blocks), value 1
        k = one_hot_cols.shape[1]
        # completion x category: value = ever clicked this banner, in the banner's category column
        comp_col = self.blocks_["completed x category"][0] + ccode
        comp_val = hist["ever_clicked_banner"]
        # numeric block = log(position) followed by the standardised numeric features
        if getattr(self, "numeric_mean_", None) is not None:
            num = (num - self.numeric_mean_) / self.numeric_scale_
        num = np.column_stack([np.log(pos.astype(np.float64)), num])
        num_off = self.blocks_["log position"][0]
        nn = num.shape[1]
        # tags: multi-hot, variable per banner
        tag_off = self.blocks_["tags"][0]
        tag_counts = np.array([len(t) for t in banners.tag_codes], dtype=np.int64)[banner_idx]
        per_row = k + 1 + nn + tag_counts
        indptr = np.concatenate([[0], np.cumsum(per_row)])
        idx_type = np.int32 if self.n_features_ < 2**31 and indptr[-1] < 2**31 else np.int64
        indptr = indptr.astype(idx_type)
        indices = np.empty(indptr[-1], dtype=idx_type)
        data = np.empty(indptr[-1], dtype=np.float64)
        # fixed part laid out row-major at the start of each row
        base = indptr[:-1]
        fixed_idx = base[:, None] + np.arange(k + 1 + nn)[None, :]
        indices[fixed_idx[:, :k]] = one_hot_cols
        data[fixed_idx[:, :k]] = 1.0
        indices[fixed_idx[:, k]] = comp_col
        data[fixed_idx[:, k]] = comp_val
        indices[fixed_idx[:, k + 1:]] = num_off + np.arange(nn)[None, :]
        data[fixed_idx[:, k + 1:]] = num
        if tag_counts.any():
            rows_with = np.flatnonzero(tag_counts)
            starts = base[rows_with] + k + 1 + nn
            flat_tags = [banners.tag_codes[b] for b in banner_idx[rows_with]]
            lens = tag_counts[rows_with]
            dest = np.repeat(starts, lens) + (np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens))
            indices[dest] = tag_off + np.concatenate(flat_tags)
            data[dest] = 1.0
        X = sp.csr_matrix((data, indices, indptr), shape=(n, self.n_features_))
        X.sum_duplicates()
        return X

    def dense_column(self, name: str) -> int:
        """Index of a numeric feature in the dense matrix."""
        return len(self.config.staff_attributes) + 3 + NUMERIC_FEATURES.index(name)

    def dense_categorical_mask(self) -> np.ndarray:
        """Which dense columns are categorical codes (for tree models with native categories)."""
        cfg = self.config
        sizes = [len(self.attr_vocab_[a]) + 1 for a in cfg.staff_attributes] + [len(self.category_vocab_) + 1, len(self.banner_vocab_) + 1]
        mask = [s <= 250 for s in sizes] + [False] + [False] * len(NUMERIC_FEATURES)
        return np.array(mask)

    def describe(self) -> dict:
        """The feature definition, for the model's metadata."""
        return {
            "config": self.config.to_dict(),
            "blocks": {k: list(v) for k, v in self.blocks_.items()},
            "numeric": list(NUMERIC_FEATURES),
            "vocabulary_sizes": {**{f"attr:{a}": len(v) for a, v in self.attr_vocab_.items()},
                                 "banner": len(self.banner_vocab_), "category": len(self.category_vocab_), "tag": len(self.tag_vocab_)},
            "base_rate": self.base_rate_,
        }
