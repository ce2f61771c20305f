"""Model artifacts: models/<version>/ with model.joblib and metadata.json (docs/data-contracts.md).

metadata.json holds the version, creation time, training data window and row counts,
the feature definition, validation metrics, library versions and the sha256 of every
file. Loading checks the checksums first and refuses a folder that does not match: a
joblib file runs code when loaded, so it is only opened once it is known to be ours.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import operator
import platform
from pathlib import Path

import joblib
import numpy as np

from features.definition import BannerArrays, FeatureEncoder
from features.kernel import N_NUMERIC
from features.lru import LRU
from features.pipeline import candidate_features, history_features, request_history

from .explain import score_parts

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"


class ArtifactError(RuntimeError):
    """A model folder that is missing, incomplete, or does not match its checksums."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    import scipy
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "scipy": scipy.__version__, "joblib": joblib.__version__}


class _CandidateList:
    """What a model keeps of one candidate list: the banners (their identity is the
    key) and their encodings."""

    __slots__ = ("serial", "banners", "arrays", "index", "completion_weight", "params")

    def __init__(self, serial: int, banners: list, arrays: BannerArrays, params: np.ndarray):
        self.serial = serial  # never reused: keys this list's static logits
        self.banners = banners
        self.arrays = arrays
        self.params = params  # the feature kernel's parameters (the encoder's)
        self.index = np.arange(len(banners))
        self.completion_weight: np.ndarray | None = None  # a linear model's weight of each row's completion column


class ModelArtifact:
    """A fitted click model: the encoder, the estimator and its metadata.

    Implements the Scorer protocol of recommender.ranker: ``score`` is the click logit at
    the reference position (attractiveness), ``click_probability`` the probability at any
    position (what the direct method of offline evaluation needs). ``score_parts``
    (recommender.explain's PartsScorer) splits the score into named parts.
    """

    # bounds of the candidate-list cache and of the static logits per (list, profile): a
    # province has hundreds to thousands of profiles, each with its eligible list
    MAX_CANDIDATE_LISTS = 1024
    MAX_STATIC = 32768  # ~15 MB for 30-candidate lists (8 bytes per candidate and entry, plus its key)

    def __init__(self, encoder: FeatureEncoder, estimator, kind: str, metadata: dict | None = None):
        self.encoder = encoder
        self.estimator = estimator
        self.kind = kind
        self.metadata = metadata or {}
        self._lists: LRU[tuple, _CandidateList] = LRU(self.MAX_CANDIDATE_LISTS)
        self._static: LRU[tuple, np.ndarray] = LRU(self.MAX_STATIC)
        self._serials = itertools.count()
        self._last_list: tuple | None = None
        if kind == "logistic":
            self._coef = np.ascontiguousarray(estimator.coef_.ravel(), dtype=np.float64)
            self._intercept = float(estimator.intercept_[0])
            self._fold_numeric()

    def _fold_numeric(self) -> None:
        """The numeric block's weights for raw numeric features: standardised feature j
        is (x_j - mean_j) / scale_j, so its term is x_j * w_j / scale_j minus a constant;
        at scoring, log(position) is the reference position's, another constant."""
        enc = self.encoder
        start, _ = enc.blocks_["log position"]
        w = self._coef[start + 1:start + 1 + enc.n_numeric]
        mean = getattr(enc, "numeric_mean_", None)
        scale = enc.numeric_scale_ if mean is not None else np.ones(len(w))
        # the kernel computes every numeric feature: those an older encoder lacks weigh 0
        self._numeric_weight = np.zeros(N_NUMERIC)
        self._numeric_weight[:len(w)] = w / scale
        self._history_constant = self._coef[start] * math.log(enc.reference_position)
        if mean is not None:
            self._history_constant -= float(mean @ self._numeric_weight[:len(w)])

    @property
    def version(self) -> str:
        return self.metadata.get("version", "unsaved")

    @property
    def staff_attributes(self) -> tuple[str, ...]:
        """The staff attributes the features read."""
        return tuple(self.encoder.config.staff_attributes)

    @property
    def dense(self) -> bool:
        return self.kind == "gbm"

    # -- the model on matrices ----------------------------------------------------------
    def logit_from_matrix(self, X) -> np.ndarray:
        if self.kind == "logistic":
            # the same linear function as decision_function, without its per-call input
            # checks (they cost more than the product on a request's 30 rows)
            return np.asarray(X @ self.estimator.coef_.ravel() + self.estimator.intercept_[0], dtype=np.float64)
        return np.asarray(self.estimator.decision_function(X), dtype=np.float64)

    # -- the Scorer protocol --------------------------------------------------------------
    def _candidate_list(self, banners) -> "_CandidateList":
        """The encoder's arrays of a candidate list (and, for a linear model, its static
        logits per profile), remembered for the next request with the same banner
        objects: the service ranks the same catalog over and over."""
        last = self._last_list
        if last is not None and last[0] is banners and len(last[1].banners) == len(banners):
            return last[1]  # the very list object of the last request (the service's cache hands it out again)
        key = tuple(map(id, banners))
        hit = self._lists.get(key)
        if hit is not None and all(map(operator.is_, hit.banners, banners)):
            self._last_list = (banners, hit)
            return hit
        # holding the objects keeps their ids unique
        entry = self._lists.put(key, _CandidateList(next(self._serials), list(banners),
                                                    self.encoder.encode_banners(banners), self.encoder.params()))
        if self.kind == "logistic":
            entry.completion_weight = self._coef[self.encoder.completion_columns(entry.arrays, entry.index)]
        self._last_list = (banners, entry)
        return entry

    def _history(self, history):
        """The click history at this model's half-life: the service keeps one set of
        counters per half-life its models use and gives each model its own ``view``."""
        view = getattr(history, "view", None)
        return history if view is None else view(self.encoder.config.half_life_days)

    def _logit(self, rows, history, position) -> np.ndarray:
        history = self._history(history)
        enc = self.encoder
        n = len(rows)
        staff = enc.encode_staff(rows.attributes)
        banners = self._candidate_list(rows.banner).arrays
        idx = np.arange(n)
        ts = np.asarray(rows.ts, dtype=np.float64)
        staff_ids = list(rows.staff_id)
        if self.kind == "logistic":
            hist = history_features(history, staff_ids, range(n), banners, range(n), ts)
            return enc.linear_logit(self._coef, self._intercept, staff, idx, banners, idx, ts, position, hist)
        X = candidate_features(enc, history, staff_ids, staff, idx, banners, idx, ts, position, self.dense)
        return self.logit_from_matrix(X)

    def _request_logit(self, rows, history) -> np.ndarray:
        """A linear model's logits of one request's candidates: the static part (one-hots,
        crosses, tags) of this profile and candidate list comes from the cache, so a
        request computes only the history part: the encoder's numeric features times
        weights with their standardisation folded in, plus the completion column; with
        the service's running history, in one compiled call (features.kernel.score_person)
        that gathers the counters, computes the features and takes the dot product. The
        same feature kernel as ``linear_logit`` (a property test checks equality)."""
        history = self._history(history)
        enc = self.encoder
        n = len(rows)
        cands = self._candidate_list(rows.banner)
        profile = rows.attributes[0]
        key = (cands.serial, enc.profile_key(profile))
        static = self._static.get(key)
        if static is None:
            parts = enc.static_parts(enc.encode_staff([profile]), np.zeros(n, dtype=np.int64), cands.arrays, cands.index)
            static = self._static.put(key, parts.dot(self._coef) + self._intercept + self._history_constant)
        arrays = cands.arrays
        fused = getattr(history, "score_person", None)
        if fused is not None:
            return fused(rows.staff_id[0], arrays.ids, arrays.categories, rows.ts[0], arrays.inputs, cands.params,
                         self._numeric_weight, cands.completion_weight, static)
        hist = request_history(history, rows.staff_id[0], cands.arrays, rows.ts[0])
        num = enc.numeric(cands.arrays, cands.index, rows.ts, hist)
        return static + num @ self._numeric_weight[:enc.n_numeric] + cands.completion_weight * hist["ever_clicked_banner"]

    def score(self, rows, history) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros(0)
        if self.kind == "logistic" and rows.single_request:
            return self._request_logit(rows, history)
        return self._logit(rows, history, None)

    def score_parts(self, rows, history) -> list:
        """``score`` split into named parts that add up to it, one list per row
        (training.explain); a model kind that cannot split its scores raises ExplainError."""
        return score_parts(self, rows, self._history(history))

    def click_probability(self, rows, history, position: np.ndarray) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros(0)
        z = self._logit(rows, history, np.asarray(position))
        return 1.0 / (1.0 + np.exp(-z))

    # -- persistence ----------------------------------------------------------------------
    def save(self, folder: str | Path, metadata: dict) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=False)
        joblib.dump({"encoder": self.encoder, "estimator": self.estimator, "kind": self.kind}, folder / MODEL_FILE, compress=3)
        meta = dict(metadata)
        meta["files"] = {MODEL_FILE: sha256_of(folder / MODEL_FILE)}
        meta["libraries"] = library_versions()
        meta["feature_definition"] = self.encoder.describe()
        (folder / METADATA_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1, default=float), encoding="utf-8")
        self.metadata = meta
        return folder


def verify(folder: str | Path) -> dict:
    """Check a model folder against its metadata; return the metadata or raise ArtifactError."""
    folder = Path(folder)
    meta_path = folder / METADATA_FILE
    if not folder.is_dir():
        raise ArtifactError(f"{folder}: not a model folder")
    if not meta_path.is_file():
        raise ArtifactError(f"{folder}: no {METADATA_FILE}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{meta_path}: unreadable metadata ({e})") from None
    files = meta.get("files")
    if not isinstance(files, dict) or MODEL_FILE not in files:
        raise ArtifactError(f"{meta_path}: no checksum for {MODEL_FILE}")
    for name, digest in files.items():
        p = folder / name
        if not p.is_file():
            raise ArtifactError(f"{folder}: {name} is missing")
        actual = sha256_of(p)
        if actual != digest:
            raise ArtifactError(f"{p}: checksum mismatch (metadata says {digest[:12]}..., file is {actual[:12]}...); refusing to load it")
    return meta


def load_model(folder: str | Path) -> ModelArtifact:
    """Load a verified model folder (see ``verify``)."""
    meta = verify(folder)
    try:
        obj = joblib.load(Path(folder) / MODEL_FILE)
    except Exception as e:  # a verified file that still fails to load: say which and why
        raise ArtifactError(f"{folder}: {MODEL_FILE} failed to load: {e}") from None
    _check_feature_definition(folder, meta, obj["encoder"])
    return ModelArtifact(obj["encoder"], obj["estimator"], obj["kind"], meta)


def _check_feature_definition(folder: str | Path, meta: dict, encoder: FeatureEncoder) -> None:
    """metadata.json describes the features the model file holds: a folder whose metadata
    was copied from another model would mislead whoever reads it."""
    held = json.loads(json.dumps(encoder.describe(), default=float))
    if meta.get("feature_definition") != held:
        raise ArtifactError(f"{folder}: {METADATA_FILE} names another feature definition than {MODEL_FILE} holds; "
                            "refusing to load it")
