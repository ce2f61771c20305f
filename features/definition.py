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

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from .counters import history_matrix
from .interest import category_counts, interest_prior, interest_units
from .kernel import BANNER_INPUTS, N_NUMERIC, N_NUMERIC_V1, PARAMS, numeric_rows

DAY = 86400.0
STANDARD_CATEGORIES = ("policy", "info", "custom", "survey", "event")


@dataclass(frozen=True)
class FeatureConfig:
    """What the encoder uses. The staff attributes are configurable per deployment.

    The crosses are the population's effects at several levels: a banner's weight, then
    each group's deviation from it (attribute x banner), next to each group's taste for a
    category, for a pair of attributes, for a kind of targeting and for a tag. Each block
    is shrunk towards its parents by its own prior when the logistic regression fits it
    (training.fitting), so a block the logs do not support costs little."""

    staff_attributes: tuple[str, ...] = ("role", "school_level", "region")
    cross_attributes: tuple[str, ...] = ("role", "school_level", "region")  # crossed with category and banner
    half_life_days: float = 7.0
    max_position: int = 10
    reference_position: int = 1
    prior_strength: float = 10.0  # pseudo-views of the smoothed click rates
    # pairs of attributes crossed together with the category (e.g. principals of high schools and surveys)
    pair_crosses: tuple[tuple[str, str], ...] = (("role", "school_level"),)
    tag_crosses: tuple[str, ...] = ("role", "school_level")  # attributes crossed with each tag
    # which attributes a banner's target restricts, crossed with its category and with the crossed attributes
    targeting_crosses: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        # fields added later are written only when set, so older models describe themselves as before
        return {k: v for k, v in d.items() if k not in LEGACY_FEATURES or v != LEGACY_FEATURES[k]}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        d = {**LEGACY_FEATURES, **d}
        for k in ("staff_attributes", "cross_attributes", "tag_crosses"):
            d[k] = tuple(d[k])
        d["pair_crosses"] = tuple(tuple(p) for p in d["pair_crosses"])
        return cls(**d)

    def __setstate__(self, state: dict) -> None:
        # a config pickled before a field existed gets that field's legacy value, not today's default
        self.__dict__.update({**LEGACY_FEATURES, **state})


# What the fields added after the first release meant before they existed (no such block).
LEGACY_FEATURES: dict = {"pair_crosses": (), "tag_crosses": (), "targeting_crosses": False}


NUMERIC_FEATURES = (
    "log_days_since_start", "start_unknown", "targeted",
    "log_views_banner", "ever_clicked_banner", "log_clicks_category", "log_views_category",
    "affinity_category", "affinity_person", "affinity_relative", "log_hours_since_click", "never_clicked",
    "log_ever_views_banner", "log_ever_clicks_category", "log_ever_views_category", "affinity_category_all_time",
    "global_ctr", "log_global_views",
    "interest_category", "interest_person", "interest_relative", "interest_category_all_time",
)
assert len(NUMERIC_FEATURES) == N_NUMERIC  # the kernel writes them in this order
assert len(BANNER_INPUTS) == 3 and len(PARAMS) == 3


def _vocab(values) -> dict[str, int]:
    """Index 0 is the unknown bucket."""
    out: dict[str, int] = {}
    for v in values:
        if v not in out:
            out[v] = len(out) + 1
    return out


def smoothed_rate(clicks, views, base_rate: float, strength: float):
    """Click rate shrunk towards ``base_rate`` by ``strength`` pseudo-views: the person's own
    rates in the history features, and popularity."""
    return (np.asarray(clicks) + strength * base_rate) / (np.asarray(views) + strength)


def popularity(global_clicks, global_views, base_rate: float, prior_strength: float = FeatureConfig.prior_strength):
    """The popularity score of a banner: everyone's clicks on it over its views before the
    request, shrunk towards ``base_rate`` by ``prior_strength`` pseudo-views. The one
    definition behind the popularity baseline of training, the popularity policy of
    offline evaluation, the simulator's logging policy and the quality benchmark."""
    return smoothed_rate(global_clicks, global_views, base_rate, prior_strength)


@dataclass
class BannerArrays:
    """Per-banner encodings (one entry per banner object given)."""

    ids: list[str]
    categories: list[str]
    banner_code: np.ndarray
    category_code: np.ndarray
    tag_counts: np.ndarray
    tag_start: np.ndarray  # where each banner's tags begin in tag_flat
    tag_flat: np.ndarray  # every banner's tag codes, one after the other
    targeted: np.ndarray
    targeting_code: np.ndarray  # which attributes the target restricts (FeatureEncoder.targeting_code)
    start: np.ndarray  # nan when open
    inputs: np.ndarray  # (n, BANNER_INPUTS): what the feature kernel reads of each banner


@dataclass
class StaffArrays:
    codes: dict[str, np.ndarray]  # attribute -> code per person (0 = unknown)


@dataclass
class StaticParts:
    """The person x banner part of a linear model's rows, which no history changes:
    ``one_hot`` (n, k) columns with value 1 (attributes, category, banner, crosses), and
    the tags as (row, column) pairs with value 1. Constant for one profile and one
    banner, so the service computes it once per profile and candidate list."""

    one_hot: np.ndarray
    tag_row: np.ndarray  # the multi-hot columns (tags, and attribute x tag), by row in order
    tag_col: np.ndarray

    def dot(self, coef: np.ndarray) -> np.ndarray:
        out = coef[self.one_hot].sum(axis=1)
        if len(self.tag_row):
            out += np.bincount(self.tag_row, weights=coef[self.tag_col], minlength=len(out))
        return out


@dataclass
class HistoryParts:
    """The part that changes with the click history and the time: one completion column
    per row with its value, and a dense numeric block of columns ``numeric_offset + j``
    (log position, then the standardised numeric features)."""

    completion_col: np.ndarray
    completion_val: np.ndarray
    numeric_offset: int
    numeric: np.ndarray

    def dot(self, coef: np.ndarray) -> np.ndarray:
        nn = self.numeric.shape[1]
        out = self.numeric @ coef[self.numeric_offset:self.numeric_offset + nn]
        out += coef[self.completion_col] * self.completion_val
        return out


@dataclass
class SparseParts:
    """A linear model's rows: the static and the history parts (each column appears in
    exactly one of them, so the row is their sum)."""

    static: StaticParts
    history: HistoryParts

    def dot(self, coef: np.ndarray) -> np.ndarray:
        """The rows times a weight vector (what X @ coef gives for the CSR matrix)."""
        return self.static.dot(coef) + self.history.dot(coef)

    def to_csr(self, n_features: int) -> sp.csr_matrix:
        one_hot, tag_row, tag_col = self.static.one_hot, self.static.tag_row, self.static.tag_col
        numeric = self.history.numeric
        n, k = one_hot.shape
        nn = numeric.shape[1]
        tag_counts = np.bincount(tag_row, minlength=n) if n else np.zeros(0, dtype=np.int64)
        per_row = k + 1 + nn + tag_counts
        indptr = np.concatenate([[0], np.cumsum(per_row)])
        idx_type = np.int32 if n_features < 2**31 and indptr[-1] < 2**31 else np.int64
        indptr = indptr.astype(idx_type)
        indices = np.empty(indptr[-1], dtype=idx_type)
        data = np.empty(indptr[-1], dtype=np.float64)
        # the fixed part laid out row-major at the start of each row, the tags after it
        base = indptr[:-1]
        fixed_idx = base[:, None] + np.arange(k + 1 + nn)[None, :]
        indices[fixed_idx[:, :k]] = one_hot
        data[fixed_idx[:, :k]] = 1.0
        indices[fixed_idx[:, k]] = self.history.completion_col
        data[fixed_idx[:, k]] = self.history.completion_val
        indices[fixed_idx[:, k + 1:]] = self.history.numeric_offset + np.arange(nn)[None, :]
        data[fixed_idx[:, k + 1:]] = numeric
        if len(tag_row):
            # tag_row is sorted (rows in order), so a tag's slot is its rank within its row
            first = np.concatenate([[0], np.cumsum(tag_counts)])[tag_row]
            dest = base[tag_row] + k + 1 + nn + (np.arange(len(tag_row)) - first)
            indices[dest] = tag_col
            data[dest] = 1.0
        X = sp.csr_matrix((data, indices, indptr), shape=(n, n_features))
        X.sum_duplicates()
        return X


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
        # until fit_interest sees a log: every category at the base rate, a neutral prior
        self.category_rate_ = np.full(len(self.category_vocab_) + 1, self.base_rate_)
        self.interest_prior_ = 1.0
        self.numeric_features_ = NUMERIC_FEATURES
        self._layout()
        return self

    @property
    def n_targeting_codes(self) -> int:
        return 2 ** (len(self.config.staff_attributes) + 1)

    def targeting_code(self, target: Mapping[str, Sequence[str]]) -> int:
        """Which attributes a banner's target restricts, as one code: bit i for the i-th
        staff attribute, the last bit for any other attribute; 0 for a banner meant for
        everyone."""
        names = self.config.staff_attributes
        code = 0
        for name, allowed in target.items():
            if len(allowed):
                code |= 1 << (names.index(name) if name in names else len(names))
        return code

    def category_code(self, category: str) -> int:
        """A category's code (0: one the encoder did not see)."""
        return self.category_vocab_.get(category, 0)

    def fit_interest(self, person: np.ndarray, category_code: np.ndarray, clicked: np.ndarray) -> "FeatureEncoder":
        """Each category's click rate and the interest prior k (features.interest) from
        the impressions of a training log: the person (any integer code), the banner's
        category (``category_code``) and the click of each row."""
        code = np.asarray(category_code, dtype=np.int64)
        # shrunk towards the base rate, so that a category with few views reads as average
        self.category_rate_ = smoothed_rate(*category_counts(code, clicked, len(self.category_vocab_) + 1),
                                            self.base_rate_, self.config.prior_strength)
        self.interest_prior_ = interest_prior(*interest_units(person, code, clicked, self.category_rate_))
        return self

    @property
    def n_numeric(self) -> int:
        return len(self.numeric_features_)

    def params(self) -> np.ndarray:
        """The feature kernel's scalar parameters (features.kernel.PARAMS)."""
        return np.array([self.base_rate_, float(self.config.prior_strength), self.interest_prior_])

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
        size = {a: len(self.attr_vocab_[a]) + 1 for a in cfg.staff_attributes}
        for a, b in cfg.pair_crosses:
            sizes.append((f"{a} x {b} x category", size[a] * size[b] * nc))
        if cfg.targeting_crosses:
            nt = self.n_targeting_codes
            sizes.append(("targeting x category", nt * nc))
            sizes += [(f"{a} x targeting", size[a] * nt) for a in cfg.cross_attributes]
        ntag = len(self.tag_vocab_) + 1
        sizes += [(f"{a} x tags", size[a] * ntag) for a in cfg.tag_crosses]
        sizes += [("completed x category", nc), ("log position", 1), ("numeric", self.n_numeric)]
        self.blocks_ = {}
        off = 0
        for name, n in sizes:
            self.blocks_[name] = (off, n)
            off += n
        self.n_features_ = off

        cross = [cfg.staff_attributes.index(a) for a in cfg.cross_attributes]
        self.offsets_ = {
            "attr": np.array([self.blocks_[f"attr:{a}"][0] for a in cfg.staff_attributes], dtype=np.int64),
            "cross_rows": np.array(cross, dtype=np.int64),
            "cross_category": np.array([self.blocks_[f"{a}x category"][0] for a in cfg.cross_attributes], dtype=np.int64),
            "cross_banner": np.array([self.blocks_[f"{a}x banner"][0] for a in cfg.cross_attributes], dtype=np.int64),
        }

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "base_rate_" in state and "numeric_features_" not in state:
            # fitted before the interest features: it reads the first ones
            self.numeric_features_ = NUMERIC_FEATURES[:N_NUMERIC_V1]
            self.category_rate_ = np.full(len(self.category_vocab_) + 1, self.base_rate_)
            self.interest_prior_ = 1.0
        if "blocks_" in state and "offsets_" not in state:
            # encoders pickled before offsets_ existed get it from their layout
            self._layout()

    # ---- per-object encodings (shared by every caller) -----------------------------
    def encode_staff(self, profiles: Sequence[Mapping[str, str]]) -> StaffArrays:
        n = len(profiles)
        if n > 1 and all(p is profiles[0] for p in profiles):
            # one person's candidates (the service): encode the profile once
            p = profiles[0]
            return StaffArrays({a: np.full(n, self.attr_vocab_[a].get(p.get(a) or "", 0), dtype=np.int64)
                                for a in self.config.staff_attributes})
        codes = {}
        for a in self.config.staff_attributes:
            v = self.attr_vocab_[a]
            codes[a] = np.fromiter((v.get(p.get(a) or "", 0) for p in profiles), dtype=np.int64, count=n)
        return StaffArrays(codes)

    def profile_key(self, profile: Mapping[str, str]) -> tuple[int, ...]:
        """The codes of one profile: profiles with equal keys encode alike."""
        return tuple(self.attr_vocab_[a].get(profile.get(a) or "", 0) for a in self.config.staff_attributes)

    def encode_banners(self, banners: Sequence) -> BannerArrays:
        tag_codes = [np.array([self.tag_vocab_.get(t, 0) for t in b.tags], dtype=np.int64) for b in banners]
        counts = np.fromiter((len(b.tags) for b in banners), dtype=np.int64, count=len(banners))
        category_code = np.fromiter((self.category_vocab_.get(b.category, 0) for b in banners), dtype=np.int64, count=len(banners))
        targeted = np.array([any(len(v) > 0 for v in b.target.values()) for b in banners], dtype=np.float64)
        start = np.array([np.nan if b.start is None else b.start for b in banners], dtype=np.float64)
        inputs = np.column_stack([start, targeted, self.category_rate_[category_code]]) \
            if len(banners) else np.zeros((0, len(BANNER_INPUTS)))
        return BannerArrays(
            ids=[b.banner_id for b in banners],
            categories=[b.category for b in banners],
            banner_code=np.fromiter((self.banner_vocab_.get(b.banner_id, 0) for b in banners), dtype=np.int64, count=len(banners)),
            category_code=category_code,
            tag_counts=counts,
            tag_start=np.cumsum(counts) - counts,
            tag_flat=np.concatenate([*tag_codes, np.zeros(0, dtype=np.int64)]),
            targeted=targeted,
            targeting_code=np.fromiter((self.targeting_code(b.target) for b in banners), dtype=np.int64,
                                       count=len(banners)),
            start=start,
            inputs=np.ascontiguousarray(inputs),
        )

    # ---- numeric features from history ---------------------------------------------
    def numeric(self, banner_rows: BannerArrays, banner_idx: np.ndarray, ts: np.ndarray, hist: Mapping[str, np.ndarray]) -> np.ndarray:
        """This encoder's numeric features (``numeric_features_``, the first columns of
        NUMERIC_FEATURES) of rows (banner banner_idx[i] at ts[i], with the history
        counters ``hist`` of their person): the compiled kernel (features.kernel) the
        service's scoring calls too."""
        n = len(ts)
        out = np.empty((n, N_NUMERIC))
        numeric_rows(history_matrix(hist, n), np.ascontiguousarray(ts, dtype=np.float64),
                     np.ascontiguousarray(banner_rows.inputs[banner_idx]), self.params(), out)
        return out if self.n_numeric == N_NUMERIC else out[:, :self.n_numeric]

    def popularity(self, hist: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each banner's smoothed global click rate before the request: the popularity order."""
        return popularity(hist["global_clicks"], hist["global_views"], self.base_rate_, self.config.prior_strength)

    # ---- the transform -------------------------------------------------------------
    def transform(self, staff: StaffArrays, staff_idx: np.ndarray, banners: BannerArrays, banner_idx: np.ndarray,
                  ts: np.ndarray, position: np.ndarray | None, hist: Mapping[str, np.ndarray], dense: bool = False):
        """Rows = (person staff_idx[i] of ``staff``, banner banner_idx[i] of ``banners``, ts[i]).

        ``position`` None means scoring: every row at the reference position. ``hist`` is
        the history query for these rows (History.query). Returns a CSR matrix, or with
        dense=True the tree-model matrix.
        """
        if dense:
            return self._dense(staff, staff_idx, banners, banner_idx, ts, position, hist)
        return self.sparse_parts(staff, staff_idx, banners, banner_idx, ts, position, hist).to_csr(self.n_features_)

    def linear_logit(self, coef: np.ndarray, intercept: float, staff: StaffArrays, staff_idx: np.ndarray,
                     banners: BannerArrays, banner_idx: np.ndarray, ts: np.ndarray, position: np.ndarray | None,
                     hist: Mapping[str, np.ndarray]) -> np.ndarray:
        """``transform(...) @ coef + intercept`` without building the matrix: the same
        sparse parts, summed as weights. What the service uses to score a few rows."""
        return self.sparse_parts(staff, staff_idx, banners, banner_idx, ts, position, hist).dot(coef) + intercept

    @property
    def reference_position(self) -> int:
        """The position every candidate is scored at (clamped to the encoded range)."""
        return min(max(self.config.reference_position, 1), self.config.max_position)

    def _positions(self, n: int, position: np.ndarray | None) -> np.ndarray:
        if position is None:
            return np.full(n, self.reference_position)
        return self.positions(position)

    def positions(self, position: np.ndarray) -> np.ndarray:
        """Positions as the features see them (clamped to 1..max_position), for callers
        that vary the position of rows encoded once (offline evaluation)."""
        return np.minimum(np.maximum(np.asarray(position), 1), self.config.max_position)

    @property
    def dense_position_column(self) -> int:
        """The position's column in the dense matrix (after the attributes, category and banner)."""
        return len(self.config.staff_attributes) + 2

    def completion_columns(self, banners: BannerArrays, banner_idx: np.ndarray) -> np.ndarray:
        """Each row's completion x category column: where its ever-clicked flag goes."""
        return self.blocks_["completed x category"][0] + banners.category_code[banner_idx]

    def _dense(self, staff, staff_idx, banners, banner_idx, ts, position, hist) -> np.ndarray:
        n = len(ts)
        pos = self._positions(n, position)
        num = self.numeric(banners, banner_idx, ts, hist)
        cols = [staff.codes[a][staff_idx] for a in self.config.staff_attributes]
        cols += [banners.category_code[banner_idx], banners.banner_code[banner_idx], pos]
        return np.column_stack([np.column_stack(cols).astype(np.float64), num]) if n else np.zeros((0, len(cols) + num.shape[1]))

    def sparse_parts(self, staff: StaffArrays, staff_idx: np.ndarray, banners: BannerArrays, banner_idx: np.ndarray,
                     ts: np.ndarray, position: np.ndarray | None, hist: Mapping[str, np.ndarray]) -> SparseParts:
        """The linear model's view of each row: which columns are on, and the values of the
        others. The single definition behind both the CSR matrix and the direct dot product."""
        return SparseParts(self.static_parts(staff, staff_idx, banners, banner_idx),
                           self.history_parts(banners, banner_idx, ts, position, hist))

    def static_parts(self, staff: StaffArrays, staff_idx: np.ndarray, banners: BannerArrays,
                     banner_idx: np.ndarray) -> StaticParts:
        """One-hots, crosses and tags of rows (person staff_idx[i], banner banner_idx[i])."""
        cfg = self.config
        n = len(banner_idx)
        bcode = banners.banner_code[banner_idx]
        ccode = banners.category_code[banner_idx]
        # one-hot columns: each attribute, category, banner, then attribute x category and
        # attribute x banner for each crossed attribute (block offset + code)
        attrs = np.array([staff.codes[a][staff_idx] for a in cfg.staff_attributes], dtype=np.int64).reshape(
            len(cfg.staff_attributes), n)
        off = self.offsets_
        crossed = attrs[off["cross_rows"]]
        columns = [
            attrs + off["attr"][:, None],
            (ccode + self.blocks_["category"][0])[None, :],
            (bcode + self.blocks_["banner"][0])[None, :],
            crossed * (len(self.category_vocab_) + 1) + ccode + off["cross_category"][:, None],
            crossed * (len(self.banner_vocab_) + 1) + bcode + off["cross_banner"][:, None],
        ]
        code = {a: attrs[i] for i, a in enumerate(cfg.staff_attributes)}
        nc = len(self.category_vocab_) + 1
        for a, b in cfg.pair_crosses:
            nb_ = len(self.attr_vocab_[b]) + 1
            columns.append((self.blocks_[f"{a} x {b} x category"][0] + (code[a] * nb_ + code[b]) * nc + ccode)[None, :])
        if cfg.targeting_crosses:
            tcode = banners.targeting_code[banner_idx]
            nt = self.n_targeting_codes
            columns.append((self.blocks_["targeting x category"][0] + tcode * nc + ccode)[None, :])
            columns += [(self.blocks_[f"{a} x targeting"][0] + code[a] * nt + tcode)[None, :]
                        for a in cfg.cross_attributes]
        one_hot = np.concatenate(columns).T
        # tags: multi-hot, a variable number per banner
        tag_counts = banners.tag_counts[banner_idx]
        n_tags = int(tag_counts.sum())
        tag_row = np.repeat(np.arange(n), tag_counts)
        # each row's tags are the slice tag_start[b]:tag_start[b] + count of the flat tag list
        first = np.repeat(banners.tag_start[banner_idx] - (np.cumsum(tag_counts) - tag_counts), tag_counts)
        tag_code = banners.tag_flat[first + np.arange(n_tags)]
        tag_col = self.blocks_["tags"][0] + tag_code
        if cfg.tag_crosses:  # each crossed attribute x each tag of the row, after the row's tags
            ntag = len(self.tag_vocab_) + 1
            cols = [tag_col] + [self.blocks_[f"{a} x tags"][0] + code[a][tag_row] * ntag + tag_code
                                for a in cfg.tag_crosses]
            rows = np.tile(tag_row, len(cols))
            order = np.argsort(rows, kind="stable")
            tag_row, tag_col = rows[order], np.concatenate(cols)[order]
        return StaticParts(one_hot=one_hot, tag_row=tag_row, tag_col=tag_col)

    def history_parts(self, banners: BannerArrays, banner_idx: np.ndarray, ts: np.ndarray,
                      position: np.ndarray | None, hist: Mapping[str, np.ndarray]) -> HistoryParts:
        """Completion and the numeric block of rows (banner banner_idx[i] at ts[i], with the
        history counters ``hist`` of their person)."""
        n = len(ts)
        # numeric block = log(position) followed by the standardised numeric features
        block = np.empty((n, 1 + self.n_numeric))
        if position is None:  # scoring: every row at the reference position
            block[:, 0] = math.log(self.reference_position)
        else:
            block[:, 0] = np.log(self._positions(n, position))
        block[:, 1:] = self.numeric(banners, banner_idx, ts, hist)
        if getattr(self, "numeric_mean_", None) is not None:
            block[:, 1:] -= self.numeric_mean_
            block[:, 1:] /= self.numeric_scale_
        return HistoryParts(
            # completion x category: ever clicked this banner, in the banner's category column
            completion_col=self.completion_columns(banners, banner_idx),
            completion_val=np.asarray(hist["ever_clicked_banner"], dtype=np.float64),
            numeric_offset=self.blocks_["log position"][0],
            numeric=block,
        )

    def dense_column(self, name: str) -> int:
        """Index of a numeric feature in the dense matrix."""
        return len(self.config.staff_attributes) + 3 + self.numeric_features_.index(name)

    def dense_categorical_mask(self) -> np.ndarray:
        """Which dense columns are categorical codes (for tree models with native categories)."""
        cfg = self.config
        sizes = [len(self.attr_vocab_[a]) + 1 for a in cfg.staff_attributes] + [len(self.category_vocab_) + 1, len(self.banner_vocab_) + 1]
        mask = [s <= 250 for s in sizes] + [False] + [False] * self.n_numeric
        return np.array(mask)

    def dense_column_names(self) -> list[str]:
        """The dense (tree-model) matrix's columns, by name."""
        return [*self.config.staff_attributes, "category", "banner", "position", *self.numeric_features_]

    def column_name(self, index: int) -> str:
        """A readable name of one column of the sparse (linear-model) matrix, e.g.
        "role x category: teacher x survey": what a weight means, for the training report."""
        block, offset = next((name, index - start) for name, (start, n) in self.blocks_.items() if start <= index < start + n)
        categories = self._names(self.category_vocab_)
        if block.startswith("attr:"):
            attr = block[5:]
            return f"{attr}: {self._names(self.attr_vocab_[attr])[offset]}"
        simple = {"category": categories, "banner": self._names(self.banner_vocab_), "tags": self._names(self.tag_vocab_)}
        if block in simple:
            return f"{'tag' if block == 'tags' else block}: {simple[block][offset]}"
        if block == "completed x category":
            return f"already clicked the banner x category: {categories[offset]}"
        if block == "log position":
            return "log(position)"
        if block == "numeric":
            return self.numeric_features_[offset]
        for a in self.config.cross_attributes:
            for other, vocab in (("category", self.category_vocab_), ("banner", self.banner_vocab_)):
                if block == f"{a}x {other}":
                    code, value = divmod(offset, len(vocab) + 1)
                    return f"{a} x {other}: {self._names(self.attr_vocab_[a])[code]} x {self._names(vocab)[value]}"
        nc = len(self.category_vocab_) + 1
        for a, b in self.config.pair_crosses:
            if block == f"{a} x {b} x category":
                pair, value = divmod(offset, nc)
                ca, cb = divmod(pair, len(self.attr_vocab_[b]) + 1)
                return (f"{a} x {b} x category: {self._names(self.attr_vocab_[a])[ca]} x "
                        f"{self._names(self.attr_vocab_[b])[cb]} x {categories[value]}")
        if block == "targeting x category":
            code, value = divmod(offset, nc)
            return f"targeting x category: {self.targeting_name(code)} x {categories[value]}"
        for a in self.config.cross_attributes:
            if block == f"{a} x targeting":
                code, value = divmod(offset, self.n_targeting_codes)
                return f"{a} x targeting: {self._names(self.attr_vocab_[a])[code]} x {self.targeting_name(value)}"
        for a in self.config.tag_crosses:
            if block == f"{a} x tags":
                code, value = divmod(offset, len(self.tag_vocab_) + 1)
                return f"{a} x tag: {self._names(self.attr_vocab_[a])[code]} x {self._names(self.tag_vocab_)[value]}"
        return f"{block} #{offset}"

    def targeting_name(self, code: int) -> str:
        """A targeting code in words: "everyone", or the attributes the target restricts."""
        names = [*self.config.staff_attributes, "other"]
        parts = [n for i, n in enumerate(names) if code >> i & 1]
        return "aimed at " + " and ".join(parts) if parts else "everyone"

    @staticmethod
    def _names(vocab: Mapping[str, int]) -> list[str]:
        """Values by code, code 0 being the unknown bucket."""
        out = ["unknown"] * (len(vocab) + 1)
        for v, code in vocab.items():
            out[code] = v
        return out

    def describe(self) -> dict:
        """The feature definition, for the model's metadata."""
        out = {
            "config": self.config.to_dict(),
            "blocks": {k: list(v) for k, v in self.blocks_.items()},
            "numeric": list(self.numeric_features_),
            "vocabulary_sizes": {**{f"attr:{a}": len(v) for a, v in self.attr_vocab_.items()},
                                 "banner": len(self.banner_vocab_), "category": len(self.category_vocab_), "tag": len(self.tag_vocab_)},
            "base_rate": self.base_rate_,
        }
        if self.n_numeric > N_NUMERIC_V1:
            out["category_rates"] = {c: float(self.category_rate_[i]) for c, i in self.category_vocab_.items()}
            out["interest_prior"] = self.interest_prior_
        return out
