"""The season simulation (simulator/season.py) on a small province: both loops see the
same requests; the oracle is at least every policy on each day (it ranks by the true click
probability, under the same pins); the corrupted night's candidate learns from shuffled
clicks while the evaluated days stay as logged; hourly batches hold each person once."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recommender.contracts import ImpressionLog, load_banners, load_impressions
from simulator.run import DAY
from simulator.season import ALWAYS, GATED, SeasonConfig, _corrupt_training_part, _occurrence, run_season
from training.retrain import RetrainConfig
from training.train import TrainConfig


@given(st.lists(st.integers(0, 5), max_size=40))
def test_occurrence_counts_the_equal_elements_before(xs):
    x = np.array(xs, dtype=int)
    expected = [xs[:i].count(v) for i, v in enumerate(xs)]
    assert _occurrence(x).tolist() == expected


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    cfg = SeasonConfig(staff=800, weeks=1, growth_days=3, new_banners_per_week=2, corrupt_night=4,
                       ramp_min_requests=50,
                       retrain=RetrainConfig(eval_days=1.0, bootstrap=20, train=TrainConfig(models=("logistic",))))
    out = tmp_path_factory.mktemp("season")
    return cfg, run_season(out, cfg), out


def test_both_loops_serve_the_same_requests_and_the_oracle_bounds_every_policy(season):
    cfg, s, _ = season
    gated, always = s["days"][GATED], s["days"][ALWAYS]
    assert len(gated) == len(always) == cfg.days
    assert [d["requests"] for d in gated] == [d["requests"] for d in always]
    for d in gated + always:
        assert d["oracle"] >= d["served"] - 1e-9 and d["oracle"] >= d["operators"] - 1e-9
    assert gated[0]["serving"] == "operators 100%"
    assert any(d["path"] == ALWAYS for d in always)


def test_the_corrupted_candidate_is_recorded_with_the_path_that_judged_it(season):
    cfg, s, _ = season
    day = s["days"][GATED][cfg.corrupt_night]
    assert "trained on shuffled clicks" in day["night"] and day["path"] in ("offline", "ramp")
    assert s["corrupted"][GATED] is not None and s["corrupted"][ALWAYS] is None
    shares = s["largest_share"][GATED]
    assert shares.get(s["corrupted"][GATED], 0.0) <= max(cfg.ramp_steps) + 0.1
    assert shares["operators"] == 1.0


def test_corruption_shuffles_the_trained_part_only(season):
    cfg, s, out = season
    catalog = load_banners(out / "banners.json")
    log = ImpressionLog.concat([load_impressions(p, catalog=catalog) for p in sorted((out / GATED).glob("day-*.jsonl"))])
    bad = _corrupt_training_part(log, 1.0, np.random.default_rng(0))
    cut = float(log.ts.max()) - DAY
    evaluated = log.ts >= cut
    assert np.array_equal(bad.clicked[evaluated], log.clicked[evaluated])
    assert bad.clicked[~evaluated].sum() == log.clicked[~evaluated].sum()
    assert not np.array_equal(bad.clicked[~evaluated], log.clicked[~evaluated])
    assert np.array_equal(bad.banner, log.banner) and np.array_equal(bad.ts, log.ts)
