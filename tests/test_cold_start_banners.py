"""Banner ids outside the catalog in the logs: accepted, counted, and ranked as the service
ranks them (a cold-start banner), a candidate only of the requests that name them."""
import json
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.main import main
from recommender.candidates import build_candidate_table, cold_start_catalog, select_candidates
from recommender.contracts import load_banners, load_impressions, write_impressions
from recommender.domain import UNKNOWN, Banner, Catalog, Staff, StaffDirectory, cold_start_banner
from training.artifact import load_model
from training.ope.data import build_bandit
from training.ope.evaluate import evaluate
from training.ope.policies import popularity_policy, uniform_policy

from test_eligibility import banners, profiles, times

KNOWN = [Banner("b1", "policy"), Banner("b2", "survey", end=1000.0), Banner("b3", "event", target={"role": ("teacher",)})]


def test_a_catalog_extended_with_cold_start_banners_knows_which_they_are():
    catalog = Catalog(KNOWN)
    ext = catalog.with_cold_start(["b-new", "b1", "b-gone", "b-new"])
    assert ext.ids == ["b1", "b2", "b3", "b-new", "b-gone"] and ext.n_known == 3
    assert ext.known == KNOWN and ext.get("b-gone") == cold_start_banner("b-gone")
    b = ext.get("b-new")
    assert (b.category, b.tags, b.target, b.start, b.end, b.pinned) == (UNKNOWN, (), {}, None, None, False)
    assert "b-new" in ext and not ext.knows("b-new") and ext.knows("b1") and not ext.knows("b-other")
    assert ext.with_cold_start(["b-gone"]) is ext
    assert ext.with_cold_start(["b-more"]).ids == ext.ids + ["b-more"]


@given(st.lists(banners(), min_size=1, max_size=6, unique_by=lambda b: b.banner_id), profiles, times,
       st.lists(st.none() | st.lists(st.sampled_from(["x1", "x2", "b0", "b1", "b22", "b333"]), unique=True), min_size=1,
                max_size=5))
def test_training_and_evaluation_candidates_are_the_services(known, profile, t, lists):
    """build_candidate_table on the catalog extended with the ids the requests name gives
    each request the candidates the service (select_candidates, on the catalog alone)
    ranks: unknown ids where a request lists them, never in a request without a list."""
    catalog = Catalog(known)
    ext = catalog.with_cold_start(x for ids in lists if ids for x in ids)
    explicit = {i: ids for i, ids in enumerate(lists) if ids is not None}
    table = build_candidate_table(ext, [profile], np.zeros(len(lists), dtype=np.int64), np.full(len(lists), t), explicit)
    for i, ids in enumerate(lists):
        served = select_candidates(catalog, profile, t, ids)
        assert [ext.banners[j] for j in table.banner[table.request == i]] == served.banners
        assert select_candidates(ext, profile, t, ids).banners == served.banners


def _row(rid, banner, position, **over):
    row = {"request_id": rid, "ts": "2024-05-02T08:41:07+09:00", "staff_id": "s1", "banner_id": banner,
           "position": position, "propensity": 0.5, "clicked": int(position == 1)}
    row.update(over)
    return row


@pytest.fixture
def log_with_unknown_banners(tmp_path):
    rows = [_row("r1", "b-new", 1), _row("r1", "b1", 2),  # shows a banner the catalog does not hold
            _row("r2", "b1", 1), _row("r2", "b3", 2),  # the catalog's banners only
            _row("r3", "b2", 1, candidates=["b2", "b-gone", "b1"]),  # lists one
            _row("r3", "b1", 2, candidates=["b2", "b-gone", "b1"])]
    path = tmp_path / "imp.jsonl"
    write_impressions(path, rows)
    return path


def test_loading_accepts_and_counts_banners_outside_the_catalog(log_with_unknown_banners):
    catalog = Catalog(KNOWN)
    log = load_impressions(log_with_unknown_banners, catalog=catalog)
    assert len(log) == 6
    assert log.outside_catalog(catalog) == (["b-new", "b-gone"], 3)  # r1's first row, both rows of r3
    assert log.outside_catalog(cold_start_catalog(catalog, [log])) == (["b-new", "b-gone"], 3)
    assert log.subset(log.request == 1).outside_catalog(catalog) == ([], 0)


def test_evaluation_makes_them_candidates_only_of_the_requests_that_name_them(log_with_unknown_banners):
    catalog = Catalog(KNOWN)
    log = load_impressions(log_with_unknown_banners, catalog=catalog)
    staff = StaffDirectory([Staff("s1", {"role": "teacher", "school_level": "high", "region": "Suwon"})])
    bandit = build_bandit(log, catalog, staff, slots=2)
    assert bandit.n == 3 and not bandit.exclusions and bandit.outside_catalog_rows == 3
    cands = {bandit.request_ids[i]: sorted(bandit.catalog.banners[j].banner_id
                                           for j in bandit.cand_banner[bandit.cand_request == i]) for i in range(3)}
    # b2's window closed before these requests: only r3's own list names it
    assert cands == {"r1": ["b-new", "b1", "b3"], "r2": ["b1", "b3"], "r3": ["b-gone", "b1", "b2"]}
    res = evaluate(bandit, [popularity_policy(bandit), uniform_policy(bandit)], n_boot=20)
    assert res.outside_catalog_impressions == 3
    assert any("3 evaluated impressions name banners outside the catalog" in w for w in res.warnings)


def test_train_and_evaluate_accept_banners_outside_the_catalog(small_province, tmp_path, capsys):
    """A tenth of the requests show a banner the catalog does not hold: train and evaluate
    run, and say how many impressions named one."""
    p = small_province
    rows = [json.loads(x) for x in (p / "impressions.jsonl").read_text(encoding="utf-8").splitlines()]
    changed = 0
    for r in rows:
        if r["position"] == 2 and zlib.crc32(r["request_id"].encode()) % 10 == 0:
            r["banner_id"] = "b-unlisted"
            changed += 1
    imp = tmp_path / "imp.jsonl"
    write_impressions(imp, rows)
    common = ["--staff", str(p / "staff.csv"), "--banners", str(p / "banners.json"), "--impressions", str(imp)]
    assert main(["train", *common, "--out", str(tmp_path / "models"), "--models", "logistic"]) == 0
    out = capsys.readouterr().out
    assert f"note: {changed:,} impressions name 1 banner(s) outside {p / 'banners.json'} (b-unlisted)" in out
    model = next((tmp_path / "models").iterdir())
    assert "b-unlisted" not in load_model(model).encoder.banner_vocab_  # scored as the cold-start bucket
    js = tmp_path / "out.json"
    assert main(["evaluate", *common, "--since", "2026-03-04T00:00:00+09:00", "--policy", str(model),
                 "--policy", "logged", "--bootstrap", "20", "--json", str(js)]) == 0
    res = json.loads(js.read_text())
    assert 0 < res["details"]["outside_catalog_impressions"] < changed
    assert "name banners outside the catalog" in capsys.readouterr().out
    assert load_banners(p / "banners.json").get("b-unlisted") is None
