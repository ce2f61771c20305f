"""Offline evaluation against the simulator's ground truth (reduced; the full-size figures
are benchmarks/bench_ope_accuracy.py).

Logs: epsilon-greedy (0.2) popularity logging. The first day is history (and trains the
target model); the later days are evaluated. Targets: the project's click model
(training.fitting.fit_click_model) trained on the first day ranking greedily
(deterministic, far from the logging policy), and the popularity order. The truth is computed from the ground truth for the evaluated requests.

Tolerance: an unbiased estimator with a calibrated 95% interval (half-width 1.96 SE)
misses the truth by more than 1.5 half-widths (2.9 SE) with probability about 0.4%; a
biased estimator or an interval that is too narrow fails it.
"""
import dataclasses

import numpy as np
import pytest

from recommender.contracts import load_banners, load_impressions, load_staff
from simulator import GroundTruth, SimulationConfig, simulate
from simulator.truevalue import TrueValue
from training.ope.data import build_bandit
from training.ope.evaluate import evaluate
from training.ope.policies import model_policy, popularity_policy
from training.ope.reward import click_matrix, fit_reward_model
from training.fitting import fit_click_model

DAY = 86400.0


def _setup(folder, n_boot=200, seed=0, logged=None):
    """Evaluate a model target and the popularity order on the days after the first, against
    the truth. ``logged(log)`` turns the simulated log into the one the evaluation reads (a
    sampled log, say); the truth always sees the history that really happened."""
    staff = load_staff(folder / "staff.csv")
    catalog = load_banners(folder / "banners.json")
    log = load_impressions(folder / "impressions.jsonl", catalog=catalog)
    cut = float(log.ts.min()) + DAY
    true_logs = log.split(cut)
    past, ev = (logged(log) if logged else log).split(cut)
    target_model = fit_click_model(staff, catalog, past)
    bandit = build_bandit(ev, catalog, staff, 3, history_logs=[past])
    q = click_matrix(bandit, fit_reward_model(staff, catalog, ev, [past])[0])
    pols = [model_policy(bandit, target_model, name="model"), popularity_policy(bandit)]
    res = evaluate(bandit, pols, q, n_boot=n_boot, seed=seed, breakdowns=False)
    tv = TrueValue(GroundTruth.load(folder), bandit, true_logs)
    return res, {p.name: tv(p) for p in pols}, pols, bandit


def drop_a_third(log, seed):
    """The log with a random third of its rows lost (a sampled log, or lost rows)."""
    return log.subset(np.random.default_rng(seed).random(len(log)) >= 1 / 3)


def one_position_per_request(log):
    """The log as a system that logs each position as a request of its own writes it."""
    ids = [f"{log.request_ids[r]}#{k}" for r, k in zip(log.request, log.position)]
    return dataclasses.replace(log, request_ids=ids, request=np.arange(len(log)),
                               candidates={i: log.candidates[r] for i, r in enumerate(log.request) if r in log.candidates})


def test_dr_and_snips_find_the_true_value(small_province):
    # The width check: a half-width under 30% of the truth. The target is the project's
    # click model ranking greedily, far from the logging order, on 5,000 staff over two
    # days: its DR half-width is 24-26% of the truth here, and IPS's 29% (the width
    # depends on how far the target is from the logging order), so a 25% bound sat on the
    # edge; 30% leaves that room and still fails an interval much wider than it should be.
    res, truth, pols, bandit = _setup(small_province)
    assert res.n_requests > 5000
    for name, t in truth.items():
        for e in ("dr", "snips"):
            v = res.policies[name][e]
            half = (v["ci_high"] - v["ci_low"]) / 2
            assert abs(v["value"] - t) <= 1.5 * half, (name, e, v, t)
            assert half < 0.30 * t  # and the interval says something
    # the model target is a real change from the logging (popularity) order: it puts other
    # banners at the first positions on a large share of requests
    model, pop = pols
    moved = np.abs(model.pi - pop.pi).sum() / (2 * bandit.n * bandit.slots)
    assert moved > 0.3, moved


@pytest.fixture(scope="module", params=[21, 22, 23])
def province(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"province{request.param}")
    simulate(folder, SimulationConfig(staff=3000, days=3, epsilon=0.2, seed=request.param))
    return folder, request.param


def test_intervals_cover_the_truth_on_other_provinces(province):
    """Per seed, at least 3 of the 4 (policy, estimator) intervals of DR and SNIPS cover
    the truth: with 95% intervals that fails with probability about 1.4% per seed."""
    folder, seed = province
    res, truth, _, _ = _setup(folder, n_boot=200, seed=seed)
    covered = [res.policies[n][e]["ci_low"] <= t <= res.policies[n][e]["ci_high"]
               for n, t in truth.items() for e in ("dr", "snips")]
    assert sum(covered) >= 3, (res.policies, truth)


def test_a_third_of_the_rows_lost_keeps_dr_and_snips_on_the_truth(province):
    """Logs that lost a random third of their rows (most requests are then partial), with
    the tolerance of complete logs: per seed, 3 of the 4 DR and SNIPS intervals cover the
    truth (that of the policies as computed from the partial history)."""
    folder, seed = province
    res, truth, _, _ = _setup(folder, n_boot=200, seed=seed, logged=lambda log: drop_a_third(log, seed))
    assert res.n_partial_requests > 0.5 * res.n_requests
    covered = [res.policies[n][e]["ci_low"] <= t <= res.policies[n][e]["ci_high"]
               for n, t in truth.items() for e in ("dr", "snips")]
    assert sum(covered) >= 3, (res.policies, truth)


def test_one_position_per_request_gives_the_complete_logs_estimates(province):
    """Each position logged as its own request id: every estimate is the complete logs' one
    (each position averaged over the requests that logged it), and the intervals cover the
    truth as well."""
    folder, seed = province
    full, truth, _, _ = _setup(folder, n_boot=200, seed=seed)
    res, _, _, bandit = _setup(folder, n_boot=200, seed=seed, logged=one_position_per_request)
    assert bandit.n == res.n_partial_requests > 2.5 * full.n_requests
    for name, t in truth.items():
        for e in ("ips", "snips", "dm", "dr"):
            assert res.policies[name][e]["value"] == pytest.approx(full.policies[name][e]["value"], rel=1e-9)
    covered = [res.policies[n][e]["ci_low"] <= t <= res.policies[n][e]["ci_high"]
               for n, t in truth.items() for e in ("dr", "snips")]
    assert sum(covered) >= 3, (res.policies, truth)


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_truth_matches_how_the_simulator_draws_clicks(tmp_path, seed):
    """On-policy check of the truth function: the logged clicks, per position and apart on
    greedy and explored impressions (the cells an off-policy target leans on), are draws of
    the probabilities TrueValue recomputes from the logs. Each standardised difference is
    ~N(0, 1) when they match; |z| > 4 anywhere has probability about 4e-4 per seed. A
    mismatch (history counted at another time, a random effect missing from the truth,
    inexact propensities) of a few percent gives |z| of 3 to 10 at this size."""
    simulate(tmp_path, SimulationConfig(staff=8000, days=4, epsilon=0.2, seed=seed))
    staff = load_staff(tmp_path / "staff.csv")
    catalog = load_banners(tmp_path / "banners.json")
    log = load_impressions(tmp_path / "impressions.jsonl", catalog=catalog)
    past, ev = log.split(float(log.ts.min()) + DAY)
    bandit = build_bandit(ev, catalog, staff, 3, history_logs=[past])
    tv = TrueValue(GroundTruth.load(tmp_path), bandit, [past, ev])
    K = bandit.slots
    p = np.where(bandit.filled, tv.p[np.maximum(bandit.shown, 0), np.arange(K)[None, :]], 0.0)
    explored = bandit.propensity < 0.5  # greedy impressions have propensity >= 1 - epsilon
    z = []
    for k in range(K):
        for group in (explored[:, k], ~explored[:, k]):
            cells = bandit.filled[:, k] & group
            pk = p[cells, k]
            z.append((bandit.click[cells, k].sum() - pk.sum()) / np.sqrt((pk * (1 - pk)).sum()))
    assert np.all(np.abs(z) < 4), z
