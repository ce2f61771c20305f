"""The array counters and the compiled feature kernel against the scoring they replaced
(tests/legacy_scoring.py): the same features and the same scores, to 1e-9, on a
simulated province, at the model's own half-life; and the service honouring it."""
from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.history import Events, History, RunningHistory
from features.pipeline import events_from_log
from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.ranker import CandidateRows
from training.artifact import ModelArtifact

from legacy_scoring import LegacyHistory, legacy_numeric

TOL = 1e-9


@pytest.fixture(scope="module")
def province(small_province):
    catalog = load_banners(small_province / "banners.json")
    log = load_impressions(small_province / "impressions.jsonl", catalog=catalog)
    return catalog, load_staff(small_province / "staff.csv"), log


def _with_half_life(model: ModelArtifact, half_life: float) -> ModelArtifact:
    """The same weights read with features decayed at another half-life (what a model
    trained with that half-life would hold)."""
    encoder = copy.deepcopy(model.encoder)
    encoder.config = replace(encoder.config, half_life_days=half_life)
    return ModelArtifact(encoder, model.estimator, model.kind)


def _legacy_scores(model: ModelArtifact, legacy: LegacyHistory, staff_id: str, profile, banners, ts: float) -> np.ndarray:
    """A linear model's logits as they were computed before the kernel: the sparse one-hot
    part, plus the numeric block (standardised) and the completion column."""
    enc = model.encoder
    n = len(banners)
    arrays = enc.encode_banners(banners)
    idx = np.arange(n)
    hist = legacy.query([staff_id] * n, arrays.ids, arrays.categories, np.full(n, ts))
    coef = model.estimator.coef_.ravel()
    static = enc.static_parts(enc.encode_staff([profile] * n), idx, arrays, idx).dot(coef)
    block = np.empty((n, 1 + len(enc.numeric_mean_)))
    block[:, 0] = math.log(enc.reference_position)
    block[:, 1:] = (legacy_numeric(enc, arrays, idx, np.full(n, ts), hist) - enc.numeric_mean_) / enc.numeric_scale_
    start = enc.blocks_["log position"][0]
    numeric = block @ coef[start:start + block.shape[1]]
    completion = coef[enc.completion_columns(arrays, idx)] * hist["ever_clicked_banner"]
    return static + numeric + completion + model.estimator.intercept_[0]


@pytest.mark.parametrize("half_life", [7.0, 2.5])
def test_service_scores_equal_the_scoring_they_replace(small_click_model, province, half_life):
    """The service's path (a base built at start, the rest added one event at a time, one
    compiled call per request) against the former scoring, at the model's half-life."""
    catalog, staff, log = province
    model = _with_half_life(small_click_model, half_life)
    events = events_from_log(log, catalog)
    cut = int(0.8 * len(log))  # the history file at start; the rest comes from live traffic
    running = RunningHistory(half_life)
    running.add_events(Events([events.staff.vocab[c] for c in events.staff.codes[:cut]],
                              [events.banner.vocab[c] for c in events.banner.codes[:cut]],
                              [events.category.vocab[c] for c in events.category.codes[:cut]],
                              events.ts[:cut], events.clicked[:cut]))
    for i in range(cut, len(log)):
        s, b = log.staff_ids[log.staff[i]], log.banner_ids[log.banner[i]]
        category = catalog.get(b).category
        running.add_impression(s, b, category, float(log.ts[i]))
        if log.clicked[i]:
            running.add_click(s, b, category, float(log.ts[i]))
    legacy = LegacyHistory(events, half_life)
    banners = list(catalog)
    ts = float(log.ts.max()) + 5400.0
    people = list(dict.fromkeys(log.staff_ids[log.staff[i]] for i in range(0, len(log), max(len(log) // 300, 1))))
    worst = 0.0
    for staff_id in [*people, "nobody-known"]:
        profile = staff.get(staff_id).attributes
        got = model.score(CandidateRows.for_request(staff_id, profile, ts, banners), running)
        want = _legacy_scores(model, legacy, staff_id, profile, banners, ts)
        worst = max(worst, float(np.max(np.abs(got - want))))
    assert worst <= TOL
    assert len(people) > 100


def test_training_features_equal_the_former_point_in_time_features(small_click_model, province):
    """History (a replay in time order) and the kernel's numeric features against the
    former index and numpy columns, on every logged row at its own time."""
    catalog, _, log = province
    enc = small_click_model.encoder
    events = events_from_log(log, catalog)
    history = History(events, 7.0)
    legacy = LegacyHistory(events, 7.0)
    rows = np.arange(0, len(log), 7)
    banners = enc.encode_banners([catalog.get(b) for b in log.banner_ids])
    staff_ids = [log.staff_ids[s] for s in log.staff[rows]]
    args = (staff_ids, [log.banner_ids[b] for b in log.banner[rows]],
            [catalog.get(log.banner_ids[b]).category for b in log.banner[rows]], log.ts[rows])
    got, want = history.query(*args), legacy.query(*args)
    for k in want:
        assert np.allclose(got[k], want[k], rtol=TOL, atol=TOL, equal_nan=True), k
    numeric = enc.numeric(banners, log.banner[rows], log.ts[rows], got)
    assert np.allclose(numeric, legacy_numeric(enc, banners, log.banner[rows], log.ts[rows], want), rtol=TOL, atol=TOL)


event = st.tuples(st.sampled_from(["s1", "s2", "s3"]), st.sampled_from(["b1", "b2", "b3", "b4"]),
                  st.integers(0, 40).map(lambda h: h * 3600.0), st.booleans())
CATS = {"b1": "policy", "b2": "policy", "b3": "survey", "b4": "event"}


@settings(max_examples=60, deadline=None)
@given(st.lists(event, max_size=40), st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3", "s9"]),
                                                         st.sampled_from(["b1", "b2", "b3", "b4", "b9"]),
                                                         st.integers(0, 45).map(lambda h: h * 3600.0)), max_size=20))
def test_point_in_time_counters_equal_the_former_index(events, queries):
    """Queries at any time, ties with event times included: the replay sees exactly the
    events strictly before each query, as the former index did."""
    ev = Events([e[0] for e in events], [e[1] for e in events], [CATS[e[1]] for e in events],
                np.array([e[2] for e in events], dtype=float), np.array([e[3] for e in events]))
    staff, banner, ts = [q[0] for q in queries], [q[1] for q in queries], np.array([q[2] for q in queries], dtype=float)
    cats = [CATS.get(b, "info") for b in banner]
    got = History(ev, 3.0).query(staff, banner, cats, ts)
    want = LegacyHistory(ev, 3.0).query(staff, banner, cats, ts)
    for k in want:
        assert np.allclose(got[k], want[k], rtol=TOL, atol=1e-12, equal_nan=True), k


def test_a_saved_base_answers_like_the_one_built(province, tmp_path):
    """What a worker maps from the history cache equals what it would have built."""
    catalog, _, log = province
    events = events_from_log(log, catalog)
    built = RunningHistory(7.0)
    built.add_events(events)
    built.save_base(tmp_path / "base")
    mapped = RunningHistory.from_base(tmp_path / "base")
    people = list(log.staff_ids[:50])
    ids = [b.banner_id for b in catalog]
    cats = [b.category for b in catalog]
    t = float(log.ts.max()) + 60.0
    for s in people:
        a, b = built.query_person(s, ids, cats, t), mapped.query_person(s, ids, cats, t)
        assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    assert mapped.n_people == built.n_people and len(mapped) == len(built)
    # the mapped base is read-only; what happens next goes to the worker's own delta
    assert not mapped.base.pb_val.flags.writeable
    mapped.add_impression(people[0], ids[0], cats[0], t)
    mapped.add_click(people[0], ids[0], cats[0], t)
    after = mapped.query_person(people[0], ids[:1], cats[:1], t + 1)
    before = built.query_person(people[0], ids[:1], cats[:1], t + 1)
    assert after["ever_views_banner"][0] == before["ever_views_banner"][0] + 1
    assert after["global_clicks"][0] == before["global_clicks"][0] + 1
    # forgetting someone of the base: their counters and their share of the banners' go
    removed = mapped.forget(people[1])
    assert removed > 0 and len(mapped) == len(built) + 1 - removed
    gone = mapped.query_person(people[1], ids, cats, t + 1)
    assert gone["ever_views_banner"].sum() == 0 and people[1] not in mapped.people()


def test_the_service_serves_a_model_with_its_own_half_life(small_click_model, small_province, tmp_path):
    """A service started with a model trained at 2.5 days keeps its click history at 2.5
    days: the model's scores in the service equal its scores over a history built at 2.5."""
    from service.config import parse_config
    from service_support import started_engine
    from training.registry import ModelRegistry

    model = _with_half_life(small_click_model, 2.5)
    models = tmp_path / "models"
    model.save(models / "v25", {"version": "v25"})
    cfg = parse_config({"service": {"db": "events.db", "models": "models",
                                    "banners": str(small_province / "banners.json"),
                                    "staff": str(small_province / "staff.csv"),
                                    "history": str(small_province / "impressions.jsonl")},
                        "keys": {"admin": ["a"]}}, tmp_path)
    registry = ModelRegistry(models)
    registry.promote("v25")
    engine = started_engine(cfg, registry)
    try:
        assert engine.online.half_lives == (2.5,)
        arm = engine.models["A"]
        assert arm.error is None and arm.version == "v25"
        catalog = load_banners(small_province / "banners.json")
        reference = RunningHistory(2.5)
        reference.add_events(events_from_log(load_impressions(small_province / "impressions.jsonl"), catalog,
                                             "unknown"))
        staff = load_staff(small_province / "staff.csv")
        banners = list(engine.catalog)
        for staff_id in ["s-000001", "s-000002", "s-000003"]:
            rows = CandidateRows.for_request(staff_id, staff.get(staff_id).attributes, 1e10, banners)
            assert np.allclose(arm.scorer.score(rows, engine.online), model.score(rows, reference), rtol=0, atol=TOL)
        assert (tmp_path / "history-cache").is_dir()  # the base the workers map
    finally:
        engine.close()


def test_queries_in_chunks_of_increasing_time_resume_the_replay(province):
    """Chunks in time order resume one replay, chunks going back in time start a new one:
    both answer as one query of every row."""
    catalog, _, log = province
    events = events_from_log(log, catalog)
    history = History(events, 7.0)
    rows = np.argsort(log.ts, kind="stable")[::3]
    s, b, c = history.codes([log.staff_ids[i] for i in log.staff[rows]], [log.banner_ids[i] for i in log.banner[rows]],
                            [catalog.get(log.banner_ids[i]).category for i in log.banner[rows]])
    whole = history.query_codes(s, b, c, log.ts[rows]).matrix
    chunks = np.array_split(np.arange(len(rows)), 7)
    forward = np.concatenate([history.query_codes(s[k], b[k], c[k], log.ts[rows][k]).matrix for k in chunks])
    backward = [history.query_codes(s[k], b[k], c[k], log.ts[rows][k]).matrix for k in chunks[::-1]]
    assert np.array_equal(forward, whole, equal_nan=True)
    assert np.array_equal(np.concatenate(backward[::-1]), whole, equal_nan=True)
