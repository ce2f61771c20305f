"""Training: artifacts, debiasing, cold start, and true quality on a small province."""
import json

import numpy as np
import pytest

from features.history import History
from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.domain import Banner
from recommender.ranker import CandidateRows
from simulator import GroundTruth, SimulationConfig, simulate
from simulator.quality import HeldOutRequests
from training.artifact import ArtifactError, load_model
from training.train import TrainConfig, train

DAY = 86400.0


@pytest.fixture(scope="module")
def province(tmp_path_factory):
    out = tmp_path_factory.mktemp("prov")
    simulate(out, SimulationConfig(staff=20000, days=5, seed=21))
    staff = load_staff(out / "staff.csv")
    catalog = load_banners(out / "banners.json")
    log = load_impressions(out / "impressions.jsonl", catalog=catalog)
    return out, staff, catalog, log


@pytest.fixture(scope="module")
def trained(province, tmp_path_factory):
    out, staff, catalog, log = province
    t0 = float(log.ts.min())
    last_day = t0 - (t0 + 9 * 3600) % DAY + 4 * DAY
    train_log = log.subset(log.ts < last_day)
    models = tmp_path_factory.mktemp("models")
    res = train(staff, catalog, train_log, models, TrainConfig(seed=1))
    return res, last_day


def test_model_beats_popularity_on_true_clicks(province, trained):
    """Reduced version of benchmarks/bench_training.py: 20,000 staff, 4 days of history."""
    out, staff, catalog, log = province
    res, last_day = trained
    truth = GroundTruth.load(out)
    held = HeldOutRequests(truth, staff, catalog, log, since=last_day, max_requests=8000, seed=2)
    rep = held.report({"model": res.artifact})
    v = rep.values
    assert v["random"] < v["popularity"] < v["oracle"]
    assert v["model"] > v["popularity"], rep.table()
    assert rep.captured_share("model") > 0.25, rep.table()


def test_artifact_round_trip_and_checksums(province, trained):
    res, _ = trained
    meta = json.loads((res.path / "metadata.json").read_text())
    for key in ("version", "created", "training_data", "feature_definition", "validation", "libraries", "files"):
        assert key in meta
    model = load_model(res.path)
    out, staff, catalog, log = province
    rows = CandidateRows(np.zeros(3, dtype=int), ["s-000001"] * 3, [staff.get("s-000001").attributes] * 3,
                         catalog.banners[:3], np.full(3, float(log.ts.max())))
    assert np.allclose(model.score(rows, History.empty()), res.artifact.score(rows, History.empty()))
    # tamper with the model file: refused with a clear message
    blob = (res.path / "model.joblib").read_bytes()
    (res.path / "model.joblib").write_bytes(blob[:-10] + b"0123456789")
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_model(res.path)
    (res.path / "model.joblib").write_bytes(blob)
    load_model(res.path)
    with pytest.raises(ArtifactError, match="no metadata.json"):
        load_model(res.path.parent)


def test_cold_start_staff_and_new_banner(province, trained):
    out, staff, catalog, log = province
    res, last_day = trained
    model = res.artifact
    truth = GroundTruth.load(out)
    t = last_day + 9 * 3600
    untargeted = [b for b in catalog.banners if not b.is_targeted() and not b.pinned]
    # a person with no history: the model's order follows the true effect of their attributes
    corr = []
    for sid in list(staff.by_id)[:200]:
        prof = staff.get(sid).attributes
        rows = CandidateRows(np.zeros(len(untargeted), dtype=int), ["never-seen-" + sid] * len(untargeted),
                             [prof] * len(untargeted), untargeted, np.full(len(untargeted), t))
        s = model.score(rows, History.empty())
        true = truth.observable_logit(np.full(len(untargeted), truth.staff_index[sid]), truth.banner_idx([b.banner_id for b in untargeted]))
        corr.append(np.corrcoef(np.argsort(np.argsort(s)), np.argsort(np.argsort(true)))[0, 1])
    assert np.mean(corr) > 0.4
    # a banner that started today, with an id the model never saw, scored from its attributes
    prof = staff.get("s-000003").attributes
    new = [Banner("b-new-survey", "survey", "새 설문", start=last_day), Banner("b-new-policy", "policy", "새 정책", start=last_day)]
    rows = CandidateRows(np.zeros(2 + len(untargeted), dtype=int), ["s-000003"] * (2 + len(untargeted)),
                         [prof] * (2 + len(untargeted)), new + untargeted, np.full(2 + len(untargeted), t))
    s = model.score(rows, History.empty())
    assert np.all(np.isfinite(s))
    assert s[0] != s[1]  # the category matters
    assert s[2:].min() - 1.0 <= s[0] <= s[2:].max() + 1.0 and s[2:].min() - 1.0 <= s[1] <= s[2:].max() + 1.0


def _star_first_log(log, truth, star_i, rng):
    """The logged requests re-served by a policy that always puts banner ``star_i`` first
    (propensity 1) followed by two of the originally shown banners; clicks from the truth."""
    from recommender.contracts.impressions import ImpressionLog

    order = np.lexsort((log.position, log.request))
    req = log.request[order]
    bounds = np.r_[np.flatnonzero(np.r_[True, req[1:] != req[:-1]]), len(req)]
    cols = {k: [] for k in ("request", "ts", "staff", "banner", "position", "propensity")}
    for r, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        rows = order[a:b]
        shown = [star_i] + [int(log.banner[i]) for i in rows if log.banner[i] != star_i][:2]
        for k, bi in enumerate(shown):
            for key, v in (("request", r), ("ts", log.ts[rows[0]]), ("staff", log.staff[rows[0]]), ("banner", bi),
                           ("position", k + 1), ("propensity", 1.0 if k == 0 else 0.5)):
                cols[key].append(v)
    arr = {k: np.asarray(v) for k, v in cols.items()}
    tu = truth.staff_idx(np.asarray(log.staff_ids)[arr["staff"]])
    tb = truth.banner_idx(np.asarray(log.banner_ids)[arr["banner"]])
    clicked = (rng.random(len(tu)) < truth.click_probability(tu, tb, arr["position"])).astype(np.int8)
    return ImpressionLog([f"q{i}" for i in range(len(bounds) - 1)], log.staff_ids, log.banner_ids, [""], arr["request"],
                         arr["ts"], arr["staff"], arr["banner"], arr["position"], arr["propensity"], clicked,
                         np.zeros(len(tu), dtype=np.int64))


def test_debiasing_a_banner_always_shown_first_is_not_ranked_first_for_everyone(tmp_path):
    """One below-average banner always holds position 1: its raw click rate beats the others'
    (position 1 is examined most), yet the model must rank it by its attractiveness. A model
    fitted without the position feature is the control: it does put that banner first."""
    from features.definition import FeatureConfig

    sim = tmp_path / "p"
    simulate(sim, SimulationConfig(staff=8000, days=3, seed=5, logging="uniform"))
    truth = GroundTruth.load(sim)
    staff = load_staff(sim / "staff.csv")
    catalog = load_banners(sim / "banners.json")
    log = load_impressions(sim / "impressions.jsonl", catalog=catalog)
    always = [b for b in catalog.banners if not b.is_targeted() and not b.pinned and b.start is None and b.end is None]
    u = np.arange(len(truth.staff_ids))
    mean_attr = {b.banner_id: truth.attractiveness(u, np.full(len(u), truth.banner_index[b.banner_id])).mean() for b in always}
    overall = np.mean(list(mean_attr.values()))
    star = min(mean_attr, key=lambda k: abs(mean_attr[k] - 0.75 * overall))  # below average, strong at position 1
    fake = _star_first_log(log, truth, log.banner_ids.index(star), np.random.default_rng(0))
    assert fake.clicked[fake.position == 1].mean() > fake.clicked[fake.position > 1].mean()  # the bias is there
    t = float(log.ts.max())
    people = list(staff.by_id)[:300]

    def share_first(artifact):
        firsts = 0
        for sid in people:
            rows = CandidateRows(np.zeros(len(always), dtype=int), [sid] * len(always),
                                 [staff.get(sid).attributes] * len(always), always, np.full(len(always), t))
            firsts += always[int(np.argmax(artifact.score(rows, History.empty())))].banner_id == star
        return firsts / len(people)

    debiased = train(staff, catalog, fake, None, TrainConfig(models=("logistic",), seed=0)).artifact
    naive = train(staff, catalog, fake, None, TrainConfig(models=("logistic",), seed=0,
                                                           features=FeatureConfig(max_position=1))).artifact
    naive_share, debiased_share = share_first(naive), share_first(debiased)
    assert naive_share > 0.3, naive_share  # the control: without position, the bias wins
    assert debiased_share < min(0.3, naive_share / 2), (debiased_share, naive_share)


def test_a_model_kind_replaces_the_first_only_when_clearly_better():
    """The first kind is kept on a tie within the validation day's noise; a challenger that
    wins by many standard errors is chosen; the estimate itself is the terms' mean."""
    from training.train import choose_kind

    rng = np.random.default_rng(0)
    base = rng.exponential(0.2, 20_000)
    noise = rng.normal(0, 0.05, 20_000)
    assert choose_kind({"logistic": base, "gbm": base + noise}) == "logistic"
    assert choose_kind({"logistic": base, "gbm": base + 0.0001 + noise}) == "logistic"
    assert choose_kind({"logistic": base, "gbm": base + 0.01 + noise}) == "gbm"
    assert choose_kind({"gbm": base, "logistic": base + noise}) == "gbm"


def test_ips_click_terms_average_to_the_estimate():
    from training.metrics import ips_click_terms, ips_clicks_at_k

    rng = np.random.default_rng(1)
    n, k = 50, 3
    request = np.repeat(np.arange(n), k)
    position = np.tile(np.arange(1, k + 1), n)
    keep = rng.random(len(request)) < 0.8
    args = (rng.random(keep.sum()) < 0.5, rng.uniform(0.1, 1, keep.sum()), rng.integers(0, 2, keep.sum()),
            request[keep], position[keep], np.full(n, 5), k)
    assert np.isclose(ips_click_terms(*args).mean(), ips_clicks_at_k(*args))
