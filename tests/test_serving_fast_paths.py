"""The service's fast paths answer exactly like the plain code they stand in for.

- ``CandidateCache.get`` (eligibility kept per profile and candidate list for the span
  no window bound crosses) returns what ``select_candidates`` computes, for any sequence
  of calls: times going forward and backward, several profiles and candidate lists,
  catalogs replaced by new objects; ``stable_span`` is a span where eligibility is constant.
- ``greedy_order`` (one lexsort, 1-D or batched 2-D) is the operators' rule written out in
  plain Python; ``greedy_keys`` sorts into the same order and keeps pinned banners first
  among the random keys of exploration.
- ``Ranker.rank`` on a prebuilt ``CandidateSet`` answers as on the plain list of banners,
  with the propensities of ``exploration.position_propensities``.
- ``ModelArtifact.score`` on one request's rows (the cached static part of a linear model)
  equals the general scoring path and the fitted estimator on the feature matrix, also
  when clicks reach the running history between two requests with the same list.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.history import History, RunningHistory
from features.pipeline import candidate_features, events_from_log
from recommender.candidates import select_candidates
from recommender.domain import CATEGORIES, UNKNOWN, Banner, Catalog
from recommender.eligibility import is_eligible
from recommender.exploration import position_propensities
from recommender.ordering import greedy_keys, greedy_order, greedy_places
from recommender.ranker import FALLBACK_VERSION, CandidateRows, CandidateSet, Ranker
from service.candidates import CandidateCache, stable_span
from training.artifact import ModelArtifact

# ---------------------------------------------------------------------------------------
# 1. candidates: CandidateCache.get == select_candidates; stable_span
# ---------------------------------------------------------------------------------------

ROLES = ["teacher", "principal", "admin_officer"]
LEVELS = ["elementary", "high", ""]
KNOWN_IDS = [f"b{i}" for i in range(6)]
UNKNOWN_IDS = ["x1", "x2"]
PROFILES = [
    {},
    {"role": "teacher"},
    {"role": "principal", "school_level": "high"},
    {"school_level": "elementary", "role": "teacher", "region": "Suwon"},
    {"role": "teacher", "school_level": ""},
    {"role": ""},
    {"role": "astronaut", "school_level": "moon"},  # values no banner targets
]
# whole and half steps over a short range: queries land on window bounds and between them
times = st.integers(-2, 24).map(lambda k: k / 2)


@st.composite
def banner_with_id(draw, banner_id: str) -> Banner:
    target = {}
    for name, values in (("role", ROLES), ("school_level", LEVELS)):
        if draw(st.booleans()):
            target[name] = tuple(draw(st.lists(st.sampled_from(values), max_size=2, unique=True)))
    return Banner(banner_id, draw(st.sampled_from(CATEGORIES)), title=f"title of {banner_id}",
                  start=draw(st.none() | times), end=draw(st.none() | times),  # end <= start: never open
                  target=target, pinned=draw(st.booleans()), priority=draw(st.integers(0, 3)))


@st.composite
def catalogs(draw) -> Catalog:
    ids = draw(st.lists(st.sampled_from(KNOWN_IDS), unique=True, max_size=len(KNOWN_IDS)))  # any subset, any order
    return Catalog([draw(banner_with_id(bid)) for bid in ids])


candidate_ids = st.lists(st.sampled_from(KNOWN_IDS + UNKNOWN_IDS), max_size=8)  # repeats and unknown ids


def assert_same_candidates(got, want) -> None:
    assert got.ids == want.ids
    assert got.banners == want.banners  # the catalog's objects (or cold-start stand-ins), field for field
    assert got.n_unknown == want.n_unknown
    assert got.category == want.category
    assert got.pinned.tolist() == want.pinned.tolist() and got.priority.tolist() == want.priority.tolist()


@settings(max_examples=200, deadline=None)
@given(st.lists(catalogs(), min_size=1, max_size=3), st.lists(candidate_ids, min_size=1, max_size=3),
       st.sampled_from([1, 2, 20_000]), st.data())
def test_candidate_cache_answers_like_select_candidates(cats, id_lists, max_entries, data):
    """Any call sequence: the catalog switches between objects (windows differ for the same
    ids), times move both ways, profiles and candidate lists recur (so the cache hits)."""
    cache = CandidateCache(max_entries=max_entries)
    first = id_lists[0]  # and lists with the same ids in another order, or repeated
    id_lists = [*id_lists, data.draw(st.permutations(first)), first + first[:2]]
    calls = data.draw(st.lists(st.tuples(st.integers(0, len(cats) - 1), st.integers(0, len(PROFILES) - 1), times,
                                         st.none() | st.integers(0, len(id_lists) - 1), st.booleans()),
                               min_size=1, max_size=30))
    for cat_i, prof_i, ts, ids_i, as_tuple in calls:
        ids = None if ids_i is None else (tuple if as_tuple else list)(id_lists[ids_i])
        profile = dict(PROFILES[prof_i])  # an equal profile, not the same object
        got = cache.get(cats[cat_i], profile, ts, ids)
        assert_same_candidates(got, select_candidates(cats[cat_i], profile, ts, ids))


def test_candidate_cache_recomputes_when_a_window_bound_is_crossed_either_way():
    opens_at_10 = Banner("b-new", "event", start=10.0, end=20.0)
    always = Banner("b-always", "info")
    cat = Catalog([opens_at_10, always])
    cache = CandidateCache()
    for ts in (5.0, 9.5, 10.0, 15.0, 19.999, 20.0, 25.0, 10.0, 9.999, -1.0, 19.0):
        want = ["b-always"] + (["b-new"] if 10.0 <= ts < 20.0 else [])
        assert sorted(cache.get(cat, {}, ts, None).ids) == sorted(want), ts
        assert cache.get(cat, {}, ts, ["b-new", "b-always"]).ids == [i for i in ["b-new", "b-always"] if i in want], ts


def test_candidate_cache_sees_a_replaced_catalog():
    cache = CandidateCache()
    old = Catalog([Banner("b1", "info", end=100.0), Banner("b2", "survey")])
    assert cache.get(old, {"role": "teacher"}, 50.0, None).ids == ["b1", "b2"]
    new = Catalog([Banner("b1", "info", end=40.0), Banner("b2", "survey", target={"role": ("principal",)}),
                   Banner("b3", "event")])  # same ids, other windows and targets
    assert cache.get(new, {"role": "teacher"}, 50.0, None).ids == ["b3"]
    assert cache.get(new, {"role": "teacher"}, 50.0, ["b1", "b3", "b9"]).ids == ["b3", "b9"]
    assert cache.get(old, {"role": "teacher"}, 50.0, None).ids == ["b1", "b2"]  # rolled back


def test_candidate_cache_hands_back_the_same_object_while_the_answer_holds():
    """The models' per-candidate-list caches key on the list object: a hit must return it."""
    cat = Catalog([Banner("b1", "info", start=0.0, end=100.0), Banner("b2", "event", target={"role": ("teacher",)})])
    cache = CandidateCache()
    first = cache.get(cat, {"role": "teacher", "region": "Suwon"}, 10.0, ["b2", "b1", "x"])
    again = cache.get(cat, {"region": "Suwon", "role": "teacher"}, 99.0, ("b2", "b1", "x"))
    assert again is first and first.ids == ["b2", "b1", "x"] and first.n_unknown == 1
    assert first.banners[2] == Banner("x", UNKNOWN)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(KNOWN_IDS), unique=True, max_size=6).flatmap(
    lambda ids: st.tuples(*[banner_with_id(b) for b in ids])), times)
def test_stable_span_holds_the_time_and_no_bound_inside(banners, ts):
    lo, hi = stable_span(banners, ts)
    assert lo <= ts < hi
    bounds = [x for b in banners for x in (b.start, b.end) if x is not None]
    assert all(x <= lo or x >= hi for x in bounds)  # no window opens or closes inside the span
    assert lo == -math.inf or lo in bounds
    assert hi == math.inf or hi in bounds
    probes = [t for t in (lo, math.nextafter(hi, -math.inf)) if math.isfinite(t)]
    for b in banners:
        for profile in PROFILES:
            for t in probes:
                assert is_eligible(b, profile, t) == is_eligible(b, profile, ts), (b, profile, t, ts)


# ---------------------------------------------------------------------------------------
# 2. exploration: greedy_order / greedy_keys against the rule written out
# ---------------------------------------------------------------------------------------

def reference_rank(score, pinned, priority) -> list[int]:
    """The operators' rule: pinned first by priority then score; the rest by score then
    priority; last, the given order."""
    return sorted(range(len(score)), key=lambda i: (not pinned[i], -priority[i] if pinned[i] else -score[i],
                                                    -score[i] if pinned[i] else -priority[i], i))


def score_values(ties: bool):
    if ties:  # integer-valued: many equal scores
        return st.integers(-2, 2).map(float)
    return st.floats(allow_nan=False, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1.0])


@st.composite
def rule_inputs(draw, rows: int | None = None):
    """(score, pinned, priority); score is (n,) when rows is None, else (rows, n)."""
    n = draw(st.integers(0, 12))
    pinned = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    prio = st.integers(-3, 3) if draw(st.booleans()) else st.integers(-10**6, 10**6)
    priority = draw(st.lists(prio, min_size=n, max_size=n))
    ties = draw(st.booleans())
    row = st.lists(score_values(ties), min_size=n, max_size=n)
    score = draw(row) if rows is None else [draw(row) for _ in range(rows)]
    return np.array(score, dtype=np.float64).reshape((n,) if rows is None else (rows, n)), pinned, priority


@settings(max_examples=500, deadline=None)
@given(rule_inputs())
def test_greedy_order_is_the_operators_rule(inputs):
    score, pinned, priority = inputs
    want = reference_rank(score.tolist(), pinned, priority)
    assert greedy_order(score, np.array(pinned, dtype=bool), np.array(priority)).tolist() == want
    assert greedy_order(score, pinned, priority).tolist() == want  # plain lists too


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4).flatmap(lambda m: rule_inputs(rows=m)))
def test_greedy_order_of_many_requests_is_each_requests_order(inputs):
    score, pinned, priority = inputs
    pinned_a, prio_a = np.array(pinned, dtype=bool), np.array(priority)
    got = greedy_order(score, pinned_a, prio_a)
    keys = greedy_keys(score, pinned_a, prio_a)
    assert got.shape == score.shape and keys.shape == score.shape
    for r in range(score.shape[0]):
        want = reference_rank(score[r].tolist(), pinned, priority)
        assert got[r].tolist() == want
        assert greedy_order(score[r], pinned_a, prio_a).tolist() == want
        assert np.argsort(keys[r], kind="stable").tolist() == want
        assert keys[r].tolist() == greedy_keys(score[r], pinned_a, prio_a).tolist()


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4).flatmap(lambda m: rule_inputs(rows=m)), st.integers(0, 2**32 - 1))
def test_greedy_places_of_flat_rows_are_each_requests_order(inputs, seed):
    """Flat (request, candidate) rows in any order: each row's place is its place in its
    own request's greedy order, candidates tie-broken by their catalog index."""
    score, pinned, priority = inputs
    m, n = score.shape
    group, catalog_index = np.repeat(np.arange(m), n), np.tile(np.arange(n), m)
    shuffle = np.random.default_rng(seed).permutation(m * n)
    place = greedy_places(group[shuffle], score.ravel()[shuffle], np.tile(pinned, m).astype(bool)[shuffle],
                          np.tile(priority, m)[shuffle], catalog_index[shuffle])
    for r in range(m):
        want = reference_rank(score[r].tolist(), pinned, priority)
        rows = np.flatnonzero(group[shuffle] == r)
        got = sorted(rows, key=lambda j: place[j])
        assert [int(catalog_index[shuffle][j]) for j in got] == want


@settings(max_examples=300, deadline=None)
@given(rule_inputs(), st.integers(0, 2**32 - 1))
def test_greedy_keys_sort_into_the_greedy_order_and_keep_pinned_first(inputs, seed):
    score, pinned, priority = inputs
    pinned_a = np.array(pinned, dtype=bool)
    want = reference_rank(score.tolist(), pinned, priority)
    keys = greedy_keys(score, pinned_a, np.array(priority))
    assert np.argsort(keys, kind="stable").tolist() == want
    assert np.all(keys[pinned_a] < -0.5)
    # epsilon_greedy's uniform order: random keys in [-0.5, 0.5) for the unpinned banners
    rand = np.where(pinned_a, keys, np.random.default_rng(seed).random(len(keys)) - 0.5)
    n_pin = int(pinned_a.sum())
    mixed = np.argsort(rand, kind="stable").tolist()
    assert mixed[:n_pin] == want[:n_pin]
    assert sorted(mixed[n_pin:]) == sorted(want[n_pin:])


# ---------------------------------------------------------------------------------------
# 3. the Ranker on a CandidateSet
# ---------------------------------------------------------------------------------------

class TableScorer:
    """Scores from a table by banner id; checks it is given one request's rows."""

    version = "table-v1"

    def __init__(self, table: dict[str, float], fail: bool = False):
        self.table, self.fail = table, fail

    def score(self, rows, history):
        assert rows.single_request and len(set(rows.staff_id)) == 1
        if self.fail:
            raise RuntimeError("model exploded")
        return np.array([self.table[b.banner_id] for b in rows.banner])


@st.composite
def ranking_cases(draw):
    n = draw(st.integers(0, 8))
    banners = [Banner(f"c{i}", draw(st.sampled_from(CATEGORIES)), pinned=draw(st.booleans()),
                      priority=draw(st.integers(0, 3))) for i in range(n)]
    ties = draw(st.booleans())
    values = st.integers(-2, 2).map(float) if ties else st.floats(-1e3, 1e3, allow_nan=False)
    table = {b.banner_id: draw(values) for b in banners}
    return banners, table


def result_fields(result):
    return (result.model_version, result.explored, list(result.banner_ids), list(result.scores), list(result.propensities))


@settings(max_examples=200, deadline=None)
@given(ranking_cases(), st.sampled_from([0.0, 0.3, 1.0]), st.integers(0, 2**32 - 1))
def test_ranker_on_a_candidate_set_answers_like_on_the_banners(case, epsilon, seed):
    banners, table = case
    scorer = TableScorer(table)
    prebuilt = CandidateSet(banners)
    served = select_candidates(Catalog(banners), {}, 0.0, None)  # the service's subclass
    rankers = [Ranker(scorer, epsilon, np.random.default_rng(seed)) for _ in range(3)]
    history = History.empty()
    pinned = np.array([b.pinned for b in banners], dtype=bool)
    keys = greedy_keys(np.array([table[b.banner_id] for b in banners]), pinned, np.array([b.priority for b in banners]))
    P = position_propensities(np.ones((1, len(banners)), bool), keys, pinned, epsilon, len(banners))[0]
    greedy = reference_rank([table[b.banner_id] for b in banners], pinned.tolist(), [b.priority for b in banners])
    ids = [b.banner_id for b in banners]
    for _ in range(4):  # the RNG moves on between requests: the same way for every input form
        plain, *others = [r.rank("s-1", {"role": "teacher"}, 100.0, c, history)
                          for r, c in zip(rankers, (banners, prebuilt, served))]
        for other in others:
            assert result_fields(other) == result_fields(plain)
        if not banners:  # nothing to rank: the model answers with an empty list
            assert plain.model_version == scorer.version and len(plain) == 0
            continue
        assert plain.model_version == scorer.version
        assert sorted(plain.banner_ids) == sorted(ids)
        shown = [ids.index(b) for b in plain.banner_ids]
        n_pin = int(pinned.sum())
        assert shown[:n_pin] == greedy[:n_pin]
        if not plain.explored:
            assert shown == greedy
        assert plain.scores == [table[b] for b in plain.banner_ids]
        assert plain.propensities == pytest.approx([P[b, k] for k, b in enumerate(shown)], rel=1e-12, abs=1e-15)
        assert all(p > 0 for p in plain.propensities)
        items = plain.items
        assert [it.position for it in items] == list(range(1, len(banners) + 1))
        assert [(it.banner_id, it.score, it.propensity) for it in items] == list(
            zip(plain.banner_ids, plain.scores, plain.propensities))


@settings(max_examples=100, deadline=None)
@given(ranking_cases(), st.booleans())
def test_ranker_fallback_on_a_candidate_set_is_the_operators_order(case, failing):
    """A scorer that fails answers the operators' order as it is; no scorer at all (before
    the first model) explores around the operators' order, with exact propensities."""
    banners, table = case
    scorer = TableScorer(table, fail=True) if failing else None
    pinned = np.array([b.pinned for b in banners], dtype=bool)
    priority = [b.priority for b in banners]
    want = [banners[i].banner_id for i in reference_rank([0.0] * len(banners), pinned.tolist(), priority)]
    keys = greedy_keys(np.zeros(len(banners)), pinned, np.array(priority))
    P = position_propensities(np.ones((1, len(banners)), bool), keys, pinned, 0.5, len(banners))[0]
    ids = [b.banner_id for b in banners]
    for cands in (banners, CandidateSet(banners)):
        res = Ranker(scorer, 0.5, np.random.default_rng(0)).rank("s-1", {}, 0.0, cands, History.empty())
        version = FALLBACK_VERSION if scorer is None or banners else scorer.version  # nothing to score: no failure
        assert [it.position for it in res.items] == list(range(1, len(banners) + 1))
        if failing:
            assert (res.model_version, res.explored, res.banner_ids) == (version, False, want)
            assert res.propensities == [1.0] * len(banners)
        else:
            assert res.model_version == version
            n_pin = int(pinned.sum())
            assert res.banner_ids[:n_pin] == want[:n_pin] and sorted(res.banner_ids) == sorted(want)
            if not res.explored:
                assert res.banner_ids == want
            shown = [ids.index(b) for b in res.banner_ids]
            assert res.propensities == pytest.approx([P[b, k] for k, b in enumerate(shown)], rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------------------------------
# 4. ModelArtifact.score: one request's rows (cached static part) == the general path
# ---------------------------------------------------------------------------------------

DAY = 86400.0


@pytest.fixture(scope="module")
def scoring(small_province, small_click_model):
    """A logistic click model fitted on the shared small province, the same model with
    every weight non-zero (so no part of the static logit can hide behind a zero weight),
    the province's click history, and candidate lists and profiles to score."""
    from recommender.contracts import load_banners, load_impressions, load_staff

    staff = load_staff(small_province / "staff.csv")
    catalog = load_banners(small_province / "banners.json")
    log = load_impressions(small_province / "impressions.jsonl", catalog=catalog)
    trained = small_click_model
    assert trained.kind == "logistic"
    dense = copy.deepcopy(trained.estimator)
    dense.coef_ = np.random.default_rng(5).normal(0.0, 0.5, size=dense.coef_.shape)
    models = {"trained": trained, "every weight": ModelArtifact(trained.encoder, dense, "logistic")}

    events = events_from_log(log, catalog)
    t_end = float(log.ts.max()) + 60.0
    clickers = np.asarray(log.staff_ids)[np.unique(log.staff[log.clicked > 0])].tolist()
    b = catalog.banners
    changed = [dataclasses.replace(x, category="event" if x.category != "event" else "survey", tags=("ai", "new-tag"))
               for x in b[5:12]]
    lists = [
        list(b),  # the whole catalog
        list(reversed(b[5:12])),
        [Banner("b-unseen-survey", "survey", "새 설문", start=t_end - DAY, tags=("plan", "never-seen"),
                target={"role": ("teacher",)}), Banner("b-unseen-other", "newsletter")] + b[:4],
        list(reversed(changed)),  # the same ids as list 1, as a reloaded catalog's new objects
        [b[0]],
        [b[3], b[1], b[3]],  # one object twice
    ]
    known = [dict(staff.get(s).attributes) for s in clickers[:2]]
    profiles = [
        known[0], known[1],
        {"role": "astronaut", "school_level": "moon", "region": "Atlantis"},  # values the model never saw
        {"role": "cosmonaut"},  # other unknown values: encodes like the one above
        {"role": "teacher"},  # attributes missing
        {},
        {"role": "teacher", "school_level": "", "region": ""},
        {**known[0], "subject": "math"},  # an extra attribute: encodes like known[0]
    ]
    staff_ids = clickers[:3] + ["never-seen"]
    return dict(models=models, events=events, history=History(events), t_end=t_end, t_start=float(log.ts.min()),
                lists=lists, profiles=profiles, staff_ids=staff_ids)


def reference_logit(model: ModelArtifact, rows: CandidateRows, history) -> np.ndarray:
    """The fitted estimator on the feature matrix, profiles encoded one copy per row."""
    enc = model.encoder
    n = len(rows)
    idx = np.arange(n)
    X = candidate_features(enc, history, list(rows.staff_id), enc.encode_staff([dict(a) for a in rows.attributes]), idx,
                           enc.encode_banners(list(rows.banner)), idx, np.asarray(rows.ts))
    return np.asarray(model.estimator.decision_function(X), dtype=np.float64)


def assert_fast_path_matches(model: ModelArtifact, staff_id: str, profile, ts: float, banners, history) -> None:
    rows = CandidateRows.for_request(staff_id, profile, ts, banners)
    assert rows.single_request
    fast = model.score(rows, history)
    general_rows = dataclasses.replace(rows, single_request=False)
    general = model.score(general_rows, history)
    uncached = ModelArtifact(model.encoder, model.estimator, model.kind).score(general_rows, history)
    assert fast.shape == (len(banners),)
    np.testing.assert_allclose(fast, general, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast, uncached, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast, reference_logit(model, rows, history), rtol=1e-9, atol=1e-9)


step = st.tuples(st.sampled_from(["score", "score", "score", "click"]), st.integers(0, 7), st.integers(0, 5),
                 st.integers(0, 3), st.integers(0, 2 * 3600))


@pytest.mark.parametrize("which", ["trained", "every weight"])
@settings(max_examples=25, deadline=None)
@given(calls=st.lists(step, min_size=1, max_size=12), history_kind=st.sampled_from(["running", "history"]))
def test_linear_model_scores_one_request_like_the_general_path(scoring, which, calls, history_kind):
    """Profiles (known, unknown values, attributes missing or extra) and candidate lists
    (with banners the model never saw, reloaded banner objects) recur, so the static
    logits come from the cache; clicks arriving in between change only the history part."""
    model = scoring["models"][which]
    events = scoring["events"]
    if history_kind == "running":
        history = RunningHistory()
        history.add_events(events)
        ts = scoring["t_end"]
    else:
        history = scoring["history"]
        ts = scoring["t_start"] + DAY  # inside the log: History answers point-in-time
    for kind, prof_i, list_i, staff_i, dt in calls:
        ts += dt
        banners = scoring["lists"][list_i]
        staff_id = scoring["staff_ids"][staff_i]
        if kind == "click" and history_kind == "running":
            b = banners[dt % len(banners)]
            history.add_impression(staff_id, b.banner_id, b.category, ts - 1.0)
            history.add_click(staff_id, b.banner_id, b.category, ts - 1.0)
        assert_fast_path_matches(model, staff_id, scoring["profiles"][prof_i], ts, banners, history)


def test_linear_model_cache_hits_after_other_lists_and_profiles(scoring):
    """Every profile with every list, twice over in different orders: hits and misses of
    the per-list and per-profile caches, the same profile with another list in between."""
    model = ModelArtifact(scoring["models"]["every weight"].encoder, scoring["models"]["every weight"].estimator,
                          "logistic")
    history = RunningHistory()
    history.add_events(scoring["events"])
    ts = scoring["t_end"]
    pairs = [(p, li) for p in range(len(scoring["profiles"])) for li in range(len(scoring["lists"]))]
    for order in (pairs, pairs[::-1], sorted(pairs, key=lambda x: (x[1], x[0]))):
        for p, li in order:
            for staff_id in scoring["staff_ids"][::3]:
                assert_fast_path_matches(model, staff_id, scoring["profiles"][p], ts, scoring["lists"][li], history)


class _CountingEncoder:
    """The model's encoder, counting what a cache miss costs."""

    def __init__(self, encoder):
        self._encoder = encoder
        self.calls = {"encode_banners": 0, "static_parts": 0}

    def __getattr__(self, name):
        attr = getattr(self._encoder, name)
        if name in self.calls:
            def counted(*args, **kwargs):
                self.calls[name] += 1
                return attr(*args, **kwargs)
            return counted
        return attr


def test_linear_model_keeps_a_province_worth_of_lists_and_profiles(scoring):
    """A province's working set (here 40 candidate lists, each with several profiles, more
    than a bound of 16 that dropped the whole cache when full) is encoded once: the
    second round over it computes nothing static again."""
    base = scoring["models"]["every weight"]
    encoder = _CountingEncoder(base.encoder)
    model = ModelArtifact(encoder, base.estimator, "logistic")
    history = RunningHistory()
    history.add_events(scoring["events"])
    b = scoring["lists"][0]
    lists = [b[i:i + k] for k in (3, 4, 5, 6) for i in range(10)]
    assert len({tuple(map(id, x)) for x in lists}) == 40
    profiles = scoring["profiles"][:3]
    for round_ in range(2):
        for banners in lists:
            for profile in profiles:
                model.score(CandidateRows.for_request("someone", profile, scoring["t_end"], banners), history)
        assert encoder.calls == {"encode_banners": 40, "static_parts": 40 * len(profiles)}, round_


def test_linear_model_and_history_with_tiny_cache_bounds(scoring):
    """Caches that evict on almost every request still answer like the plain code."""
    class TinyModel(ModelArtifact):
        MAX_CANDIDATE_LISTS = 2
        MAX_STATIC = 3

    class TinyHistory(RunningHistory):
        MAX_CANDIDATE_LISTS = 2

    base = scoring["models"]["every weight"]
    model = TinyModel(base.encoder, base.estimator, "logistic")
    history = TinyHistory()
    history.add_events(scoring["events"])
    pairs = [(p, li) for p in range(4) for li in range(len(scoring["lists"]))]
    for order in (pairs, pairs[::-1], sorted(pairs, key=lambda x: (x[1], x[0]))):
        for p, li in order:
            assert_fast_path_matches(model, scoring["staff_ids"][0], scoring["profiles"][p], scoring["t_end"],
                                     scoring["lists"][li], history)


def test_linear_model_after_clicks_on_banners_new_to_the_history(scoring):
    """The same candidate list object before and after its banners (some never seen by the
    history nor the model) get impressions and clicks: only the history part moves, and
    it must see the new counters."""
    model = scoring["models"]["every weight"]
    history = RunningHistory()
    history.add_events(scoring["events"])
    ts = scoring["t_end"]
    staff_id, profile = scoring["staff_ids"][0], scoring["profiles"][0]
    for banners in scoring["lists"]:
        assert_fast_path_matches(model, staff_id, profile, ts, banners, history)
        before = model.score(CandidateRows.for_request(staff_id, profile, ts + 10.0, banners), history)
        for b in banners:
            history.add_impression(staff_id, b.banner_id, b.category, ts)
            history.add_click(staff_id, b.banner_id, b.category, ts)
            history.add_impression("someone-else", b.banner_id, b.category, ts)
        ts += 10.0
        assert_fast_path_matches(model, staff_id, profile, ts, banners, history)
        assert not np.allclose(model.score(CandidateRows.for_request(staff_id, profile, ts, banners), history), before)

