"""`recommender evaluate`: the table, the JSON, the report, and bad input."""
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from cli.main import main

N_LINES = 9000  # a slice of the small province's logs keeps these tests fast


@pytest.fixture(scope="module")
def logs(small_province, tmp_path_factory):
    d = tmp_path_factory.mktemp("ope_cli")
    lines = (small_province / "impressions.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    # whole requests only
    rows = [json.loads(x) for x in lines[:N_LINES]]
    last = rows[-1]["request_id"]
    rows = [r for r in rows if r["request_id"] != last]
    return d, rows


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(small_province, impressions, *extra):
    return main(["evaluate", "--staff", str(small_province / "staff.csv"), "--banners", str(small_province / "banners.json"),
                 "--impressions", str(impressions), "--bootstrap", "50", *extra])


def test_json_table_and_report(small_province, logs, tmp_path, capsys):
    _, rows = logs
    imp = _write(tmp_path / "imp.jsonl", rows)
    out, rep = tmp_path / "out.json", tmp_path / "report.html"
    code = _run(small_province, imp, "--policy", "popularity", "--policy", "random", "--policy", "logged",
                "--json", str(out), "--report", str(rep))
    assert code == 0
    printed = capsys.readouterr().out
    assert "popularity" in printed and "DR" in printed and "paired differences" in printed
    res = json.loads(out.read_text(encoding="utf-8"))
    n_req = len({r["request_id"] for r in rows})
    assert res["n_requests"] == n_req and res["slots"] == 3
    assert list(res["policies"]) == ["popularity", "random", "logged"]
    assert res["details"]["click_model"].startswith("training.fitting.fit_click_model")
    for vals in res["policies"].values():
        assert set(vals) == {"ips", "snips", "dm", "dr"}
        for e in vals.values():
            assert set(e) == {"value", "ci_low", "ci_high"} and e["ci_low"] <= e["value"] <= e["ci_high"]
    assert set(res["differences"]) == {"random-popularity", "logged-popularity"}
    assert isinstance(res["warnings"], list)
    # on-policy: IPS of the logging policy is the logged clicks per request
    clicks = sum(r["clicked"] for r in rows if r["position"] <= 3)
    assert res["policies"]["logged"]["ips"]["value"] == pytest.approx(clicks / n_req)
    # the report: one self-contained page with the plots
    page = rep.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for needle in ("<script", "<link", "src=", "url("):
        assert needle not in page
    svgs = page.split("<svg")[1:]
    assert len(svgs) >= 5
    for s in svgs:
        ET.fromstring("<svg" + s.split("</svg>")[0] + "</svg>")  # well-formed
    assert "Effective sample size" in page and "per banner category" in page and "per position" in page


def test_positions_beyond_the_slots_are_counted(small_province, logs, tmp_path):
    _, rows = logs
    imp = _write(tmp_path / "imp.jsonl", rows)
    out = tmp_path / "out.json"
    assert _run(small_province, imp, "--policy", "logged", "--slots", "2", "--json", str(out)) == 0
    res = json.loads(out.read_text(encoding="utf-8"))
    beyond = sum(r["position"] > 2 for r in rows)
    assert beyond > 0
    assert [v for k, v in res["details"]["exclusions"].items() if "beyond" in k] == [beyond]
    assert any("beyond" in w for w in res["warnings"])
    clicks = sum(r["clicked"] for r in rows if r["position"] <= 2)
    assert res["policies"]["logged"]["ips"]["value"] == pytest.approx(clicks / res["n_requests"])


def test_a_shown_banner_that_was_not_eligible_excludes_its_request(small_province, logs, tmp_path):
    _, rows = logs
    rows = [dict(r) for r in rows]
    # a banner the request could not have shown: replace a shown banner with one that is not
    # a candidate (targeted elsewhere or outside its window) for the same request
    from recommender.contracts import load_banners, load_staff
    from recommender.eligibility import is_eligible
    from recommender.timeutil import parse_ts

    catalog = load_banners(small_province / "banners.json")
    staff = load_staff(small_province / "staff.csv")
    r = rows[0]
    shown = {x["banner_id"] for x in rows if x["request_id"] == r["request_id"]}
    person = staff.get(r["staff_id"]).attributes
    bad = next(b.banner_id for b in catalog if b.banner_id not in shown and not is_eligible(b, person, parse_ts(r["ts"])))
    r["banner_id"] = bad
    imp = _write(tmp_path / "imp.jsonl", rows)
    out = tmp_path / "out.json"
    assert _run(small_province, imp, "--policy", "popularity", "--json", str(out)) == 0
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["n_requests"] == len({x["request_id"] for x in rows}) - 1
    assert [v for k, v in res["details"]["exclusions"].items() if "not among their candidates" in k] == [1]


@pytest.mark.parametrize("change, field", [({"propensity": 0}, "propensity"), ({"propensity": None}, "propensity"),
                                           ({"position": 0}, "position")])
def test_bad_propensities_are_clear_errors(small_province, logs, tmp_path, capsys, change, field):
    _, rows = logs
    rows = [dict(r) for r in rows]
    rows[5].update(change)
    if change.get("propensity", 1) is None:
        del rows[5]["propensity"]
    imp = _write(tmp_path / "imp.jsonl", rows)
    assert _run(small_province, imp, "--policy", "logged") == 2
    err = capsys.readouterr().err
    assert f"{imp}:6: field '{field}'" in err


def test_unknown_policy_is_a_clear_error(small_province, logs, tmp_path, capsys):
    _, rows = logs
    imp = _write(tmp_path / "imp.jsonl", rows)
    assert _run(small_province, imp, "--policy", "popularity", "--policy", str(tmp_path / "no-such-model")) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "popularity, random, logged" in err


def test_tiny_propensities_make_the_tool_warn_with_the_effective_sample_size(small_province, logs, tmp_path, capsys):
    """Explored impressions logged with propensities 100 times too small: IPS would print
    ~10 clicks per request on 3 slots. The tool flags IPS and SNIPS as unreliable, with
    the effective sample size, and prints "unreliable" in the table."""
    _, rows = logs
    rows = [dict(r) for r in rows]
    for r in rows:
        if r["propensity"] < 0.5:  # explored impressions: make them look very unlikely
            r["propensity"] = r["propensity"] / 100
    imp = _write(tmp_path / "imp.jsonl", rows)
    out = tmp_path / "out.json"
    assert _run(small_province, imp, "--policy", "random", "--json", str(out)) == 0
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["details"]["diagnostics"]["random"]["ips_reliable"] is False
    assert any(w.startswith("random: IPS and SNIPS are unreliable (effective sample size") for w in res["warnings"])
    assert "unreliable" in capsys.readouterr().out
    ratios = [p["weight_mean_ratio"] for p in res["details"]["diagnostics"]["random"]["positions"]]
    assert np.max(ratios) > 10


@pytest.fixture(scope="module")
def model_folder(small_province, logs):
    from recommender.contracts import load_banners, load_impressions, load_staff
    from training.fitting import fit_click_model

    d, rows = logs
    imp = _write(d / "train.jsonl", rows)
    catalog = load_banners(small_province / "banners.json")
    model = fit_click_model(load_staff(small_province / "staff.csv"), catalog, load_impressions(imp, catalog=catalog))
    return model.save(d / "models" / "m-test", {"version": "m-test"})


def test_a_model_folder_is_evaluated_under_its_version(small_province, logs, model_folder, tmp_path):
    _, rows = logs
    imp = _write(tmp_path / "imp.jsonl", rows)
    out = tmp_path / "out.json"
    assert _run(small_province, imp, "--policy", "popularity", "--policy", str(model_folder), "--json", str(out)) == 0
    res = json.loads(out.read_text(encoding="utf-8"))
    assert list(res["policies"]) == ["popularity", "m-test"]
    assert list(res["differences"]) == ["m-test-popularity"]
    out2 = tmp_path / "out2.json"
    assert _run(small_province, imp, "--policy", str(model_folder), "--epsilon", "0.2", "--json", str(out2)) == 0
    res2 = json.loads(out2.read_text(encoding="utf-8"))
    assert list(res2["policies"]) == ["m-test+eps0.2"]
    # epsilon-greedy around the model is another policy, evaluated as served
    assert res2["policies"]["m-test+eps0.2"]["dm"]["value"] != res["policies"]["m-test"]["dm"]["value"]


def test_a_model_folder_failing_its_checksum_is_refused(small_province, logs, model_folder, tmp_path, capsys):
    import shutil

    _, rows = logs
    imp = _write(tmp_path / "imp.jsonl", rows)
    bad = tmp_path / "bad-model"
    shutil.copytree(model_folder, bad)
    with open(bad / "model.joblib", "ab") as f:
        f.write(b"\0")
    assert _run(small_province, imp, "--policy", "popularity", "--policy", str(bad)) == 2
    err = capsys.readouterr().err
    assert "checksum" in err and "bad-model" in err


def test_a_model_is_evaluated_with_boltzmann_exploration(small_province, logs, model_folder, tmp_path, capsys):
    _, rows = logs
    imp = _write(tmp_path / "imp.jsonl", rows)
    out = tmp_path / "out.json"
    assert _run(small_province, imp, "--policy", str(model_folder), "--epsilon", "0.2", "--exploration", "boltzmann",
                "--temperature", "0.5", "--depth", "2", "--json", str(out)) == 0
    res = json.loads(out.read_text(encoding="utf-8"))
    assert list(res["policies"]) == ["m-test+boltzmann-eps0.2-t0.5-d2"]
    assert _run(small_province, imp, "--policy", "popularity", "--exploration", "boltzmann", "--temperature", "0") == 2
    assert "--temperature must be a number above 0" in capsys.readouterr().err
