"""Features: point-in-time correctness and one code path."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.definition import FeatureConfig, FeatureEncoder
from features.history import Coded, Events, History, RunningHistory
from features.pipeline import candidate_features
from recommender.domain import Banner

BANNERS = [Banner("b1", "policy", tags=("ai",)), Banner("b2", "survey", start=0.0, target={"role": ("teacher",)}),
           Banner("b3", "event", tags=("ai", "x"))]
STAFF = ["s1", "s2", "s3"]
CATS = {b.banner_id: b.category for b in BANNERS}

event = st.tuples(st.sampled_from(STAFF), st.sampled_from([b.banner_id for b in BANNERS]),
                  st.integers(0, 1000).map(float), st.integers(0, 1))


def encoder():
    return FeatureEncoder(FeatureConfig()).fit({"role": ["teacher", "principal"], "school_level": ["high"], "region": ["Suwon"]},
                                               BANNERS, 0.05)


def history(events):
    return History(Events([e[0] for e in events], [e[1] for e in events], [CATS[e[1]] for e in events],
                          np.array([e[2] for e in events]), np.array([e[3] for e in events])))


def features_at(enc, hist, t, dense):
    staff = enc.encode_staff([{"role": "teacher"}, {"role": "principal", "region": "Busan"}, {}])
    banners = enc.encode_banners(BANNERS)
    si = np.repeat(np.arange(3), 3)
    bi = np.tile(np.arange(3), 3)
    return candidate_features(enc, hist, STAFF, staff, si, banners, bi, np.full(9, t), None, dense)


@settings(max_examples=60, deadline=None)
@given(st.lists(event, max_size=25), st.lists(event, min_size=1, max_size=10), st.integers(1, 1000).map(float))
def test_events_at_or_after_t_never_change_features_at_t(past, later, t):
    enc = encoder()
    past = [e for e in past if e[2] < t]
    later = [(s, b, t + (e_ts % 50), c) for s, b, e_ts, c in later]  # at t or after
    for dense in (False, True):
        a = features_at(enc, history(past), t, dense)
        b = features_at(enc, history(past + later), t, dense)
        if not dense:
            a, b = a.toarray(), b.toarray()
        assert np.allclose(a, b, equal_nan=True)


def test_earlier_events_do_change_features():
    enc = encoder()
    a = features_at(enc, history([]), 500.0, True)
    b = features_at(enc, history([("s1", "b2", 100.0, 1)]), 500.0, True)
    assert not np.allclose(a, b)


def test_unknown_values_fall_in_the_unknown_bucket():
    enc = encoder()
    staff = enc.encode_staff([{"role": "astronaut", "region": ""}])
    assert staff.codes["role"][0] == 0 and staff.codes["region"][0] == 0
    banners = enc.encode_banners([Banner("brand-new", "newsletter", tags=("never-seen",))])
    assert banners.banner_code[0] == 0 and banners.category_code[0] == 0
    X = candidate_features(enc, History.empty(), ["nobody"], staff, np.array([0]), banners, np.array([0]), np.array([5.0]))
    assert np.all(np.isfinite(X.toarray()))


@settings(max_examples=40, deadline=None)
@given(st.lists(event, max_size=25), st.integers(1, 1100).map(float), st.integers(0, 2**32 - 1),
       st.lists(st.integers(1, 12), min_size=9, max_size=9))
def test_linear_logit_is_the_matrix_times_the_weights(past, t, seed, positions):
    """The service's direct dot product and the training matrix are one definition."""
    from features.pipeline import history_features

    enc = encoder()
    coef = np.random.default_rng(seed).normal(size=enc.n_features_)
    profiles = [{"role": "teacher"}, {"role": "principal", "region": "Busan"}, {}]
    staff = enc.encode_staff(profiles)
    banners = enc.encode_banners(BANNERS + [Banner("unseen", "newsletter", tags=("ai", "new"))])
    si = np.repeat(np.arange(3), 4)[:9]
    bi = np.tile(np.arange(4), 3)[:9]
    ts = np.full(9, t)
    hist = history_features(history([e for e in past]), STAFF, si, banners, bi, ts)
    for pos in (None, np.array(positions)):
        X = enc.transform(staff, si, banners, bi, ts, pos, hist)
        direct = enc.linear_logit(coef, 0.25, staff, si, banners, bi, ts, pos, hist)
        assert np.allclose(direct, X @ coef + 0.25)


def test_one_profile_repeated_encodes_like_distinct_copies():
    enc = encoder()
    p = {"role": "principal", "school_level": "high"}
    same = enc.encode_staff([p] * 4)
    copies = enc.encode_staff([dict(p) for _ in range(4)])
    for a in enc.config.staff_attributes:
        assert np.array_equal(same.codes[a], copies.codes[a])


def events_from_rows(rows, coded=False) -> Events:
    """Events of (staff, banner, ts, clicked) rows; ``coded``: ids as vocabularies and codes
    (how the service loads a history file), with vocabulary entries no event uses."""
    ts = np.array([e[2] for e in rows], dtype=float)
    clicked = np.array([e[3] for e in rows])
    if not coded:
        return Events([e[0] for e in rows], [e[1] for e in rows], [CATS[e[1]] for e in rows], ts, clicked)
    staff_vocab = ["unused-person"] + STAFF
    banner_vocab = ["unused-banner"] + [b.banner_id for b in BANNERS]
    cat_vocab = ["unused-category"] + sorted(set(CATS.values()))
    return Events(Coded(staff_vocab, np.array([staff_vocab.index(e[0]) for e in rows], dtype=np.int64)),
                  Coded(banner_vocab, np.array([banner_vocab.index(e[1]) for e in rows], dtype=np.int64)),
                  Coded(cat_vocab, np.array([cat_vocab.index(CATS[e[1]]) for e in rows], dtype=np.int64)),
                  ts, clicked)


@settings(max_examples=100, deadline=None)
@given(st.lists(event, max_size=30), st.data())
def test_running_history_answers_like_history(events, data):
    """The service's running counters equal the History built over the same events, for
    queries after every event (what the service asks)."""
    from features.history import RunningHistory

    events = sorted(events, key=lambda e: e[2])
    # an origin near the events, or decades before them (the weights then move it forward)
    run = RunningHistory(7.0, t_ref=data.draw(st.one_of(st.none(), st.integers(0, 500).map(float),
                                                        st.integers(-10**9, 0).map(float))))
    # the history loaded at start in bulk, then events one at a time
    n_bulk = data.draw(st.integers(0, len(events)))
    bulk, later = events[:n_bulk], events[n_bulk:]
    run.add_events(events_from_rows(bulk, coded=data.draw(st.booleans())))
    for s, b, ts, clicked in later:
        run.add_impression(s, b, CATS[b], ts)
    for s, b, ts, clicked in later:  # clicks arrive after their impressions
        if clicked:
            run.add_click(s, b, CATS[b], ts)
    t = (events[-1][2] if events else 0.0) + data.draw(st.integers(1, 100_000).map(float))
    staff = [s for s in STAFF for _ in BANNERS] + ["nobody"]
    banners = [b.banner_id for _ in STAFF for b in BANNERS] + ["b1"]
    cats = [CATS[b] for b in banners]
    want = history(events).query(staff, banners, cats, np.full(len(staff), t))
    got = run.query(staff, banners, cats, np.full(len(staff), t))
    assert set(got) == set(want)
    for k in want:
        assert np.allclose(got[k], want[k], rtol=1e-9, atol=1e-12, equal_nan=True), k
    assert run.n_people == len({e[0] for e in events})  # nobody from an unused vocabulary entry
    # one person's request (the service's path), candidates in any order, with repeats
    ids = data.draw(st.lists(st.sampled_from([b.banner_id for b in BANNERS] + ["unseen"]), max_size=8))
    cats_of = [CATS.get(b, "newsletter") for b in ids]
    for person in [*STAFF, "nobody"]:
        want = history(events).query([person] * len(ids), ids, cats_of, np.full(len(ids), t))
        got = run.query_person(person, ids, cats_of, t)
        assert set(got) == set(want)
        for k in want:
            assert got[k].shape == (len(ids),)
            assert np.allclose(got[k], want[k], rtol=1e-9, atol=1e-12, equal_nan=True), k


def test_running_history_spans_decades_without_overflow():
    """A history file with a row decades old must not break the service's counters."""
    run = RunningHistory(7.0)
    run.add_events(events_from_rows([("s1", "b1", 0.0, 1)]))
    later = 40 * 365 * 86400.0
    run.add_impression("s1", "b1", "policy", later)
    run.add_click("s1", "b1", "policy", later)
    q = run.query(["s1"], ["b1"], ["policy"], np.array([later + 60.0]))
    assert all(np.all(np.isfinite(v)) for v in q.values())
    assert q["ever_views_banner"][0] == 2 and q["ever_clicked_banner"][0] == 1
    assert np.isclose(q["views_banner"][0], np.exp(-60.0 / run.tau))  # the old view has fully decayed


def test_sparse_features_of_no_rows():
    enc = encoder()
    staff = enc.encode_staff([{"role": "teacher"}])
    banners = enc.encode_banners(BANNERS)
    none = np.zeros(0, dtype=np.int64)
    X = candidate_features(enc, History.empty(), ["s1"], staff, none, banners, none, np.zeros(0))
    assert X.shape == (0, enc.n_features_)
    assert enc.linear_logit(np.ones(enc.n_features_), 0.0, staff, none, banners, none, np.zeros(0), None,
                            {k: np.zeros(0) for k in History.empty().query([], [], [], np.zeros(0))}).shape == (0,)


def _on_columns(enc, profile, banner):
    """The names of the static columns one (profile, banner) row turns on."""
    parts = enc.static_parts(enc.encode_staff([profile]), np.zeros(1, dtype=np.int64), enc.encode_banners([banner]),
                             np.zeros(1, dtype=np.int64))
    return sorted(enc.column_name(int(c)) for c in [*parts.one_hot[0], *parts.tag_col])


def test_population_crosses_name_the_group_the_targeting_and_the_tags():
    enc = encoder()
    names = _on_columns(enc, {"role": "principal", "school_level": "high", "region": "Suwon"},
                        Banner("b2", "survey", target={"role": ("principal",)}, tags=("ai",)))
    assert "role x school_level x category: principal x high x survey" in names
    assert "targeting x category: aimed at role x survey" in names
    assert "region x targeting: Suwon x aimed at role" in names
    assert "role x tag: principal x ai" in names and "tag: ai" in names
    everyone = _on_columns(enc, {"role": "teacher"}, Banner("b1", "policy"))
    assert "targeting x category: everyone x policy" in everyone
    assert not any("x tag:" in n for n in everyone)  # a banner without tags has no tag crosses


@given(st.lists(st.sampled_from(["role", "school_level", "region", "grade"]), max_size=4, unique=True))
def test_the_targeting_code_says_which_attributes_are_restricted(restricted):
    enc = encoder()
    code = enc.targeting_code({a: ("x",) for a in restricted} | {"unused": ()})
    named = enc.targeting_name(code)
    assert (code == 0) == (not restricted) and (named == "everyone") == (not restricted)
    for a in ("role", "school_level", "region"):
        assert (a in named) == (a in restricted)
    assert ("other" in named) == ("grade" in restricted)


def test_a_config_pickled_before_the_crosses_keeps_its_layout():
    import pickle

    legacy = dict(FeatureConfig().__dict__)
    for name in ("pair_crosses", "tag_crosses", "targeting_crosses"):
        del legacy[name]
    old = object.__new__(FeatureConfig)
    old.__setstate__(legacy)
    assert pickle.loads(pickle.dumps(old)) == old
    assert (old.pair_crosses, old.tag_crosses, old.targeting_crosses) == ((), (), False)
    assert set(old.to_dict()) == set(legacy)  # describes itself as it did
    enc = FeatureEncoder(old).fit({"role": ["teacher"]}, BANNERS, 0.05)
    assert not any("targeting" in b or "tags" in b and b != "tags" or b.count(" x ") > 1 for b in enc.blocks_)
    assert FeatureConfig.from_dict(old.to_dict()) == old


def _soak(running: RunningHistory, people: int, banners: int, rounds: int, seed: int = 0) -> None:
    """Each person sees a few more banners each round (their counter rows keep outgrowing
    their room and moving), as a service's people do over a day."""
    rng = np.random.default_rng(seed)
    ts = 1_000_000.0
    for _ in range(rounds):
        for p in range(people):
            shown = rng.choice(banners, size=3, replace=False)
            ts += 1.0
            running.add_impressions(f"s-{p}", [f"b-{b}" for b in shown], [f"c-{b % 5}" for b in shown], ts)


def test_counter_arrays_stay_within_a_bound_of_the_rows_they_hold():
    """A row that outgrows its room moves to the end of the arrays and leaves its old room
    behind: the arrays compact instead of growing, so that a reserve that holds the rows'
    room with some to spare (a 40% margin here) is never outgrown, though the rows moved
    three times each (4, 8, 16, then 32 entries: nearly twice their final room in all)."""
    running = RunningHistory()
    room = 300 * 32  # 300 people, each with a row of room for 32 once they saw most of 30 banners
    running.reserve(people=300, pairs=int(1.4 * room))
    # all but the per-banner totals, which follow the catalog (a row of two numbers per banner)
    arrays = {n: getattr(running.delta, n) for n in running.delta.NAMES if n != "glob"}
    _soak(running, people=300, banners=30, rounds=40)
    d = running.delta
    assert int(d.pb_cap.sum()) <= room and int(d.pb_len.sum()) <= 300 * 30
    assert all(getattr(d, n) is a for n, a in arrays.items()), "an array was replaced (grown)"
    assert int(d.used[0]) <= len(d.pb_key) and int(d.used[1]) <= len(d.pc_key)


def test_compacted_counters_answer_as_before():
    """Compaction moves rows, never their counts: the same answers as a history built at once."""
    running = RunningHistory()
    _soak(running, people=50, banners=30, rounds=30, seed=3)
    rng = np.random.default_rng(3)
    staff, banner, category, ts = [], [], [], []
    t = 1_000_000.0
    for _ in range(30):
        for p in range(50):
            shown = rng.choice(30, size=3, replace=False)
            t += 1.0
            for b in shown:
                staff.append(f"s-{p}"), banner.append(f"b-{b}"), category.append(f"c-{b % 5}"), ts.append(t)
    history = History(Events(staff, banner, category, np.array(ts), np.zeros(len(ts), dtype=bool)))
    q = ([f"s-{p}" for p in range(50)], [f"b-{p % 30}" for p in range(50)], [f"c-{p % 5}" for p in range(50)],
         np.full(50, t + 10.0))
    got, want = running.query(*q), history.query(*q)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, equal_nan=True)
