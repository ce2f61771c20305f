"""The CLI as data staff use it: simulate, then validate good and bad files."""
import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True)


def test_validate_good_files(small_province):
    p = small_province
    r = run("validate", "--staff", str(p / "staff.csv"), "--banners", str(p / "banners.json"),
            "--impressions", str(p / "impressions.jsonl"))
    assert r.returncode == 0, r.stderr
    assert "5,000 staff" in r.stdout and "click rate" in r.stdout


def test_validate_reports_every_error_and_exits_non_zero(tmp_path, small_province):
    lines = (small_province / "impressions.jsonl").read_text(encoding="utf-8").splitlines()[:20]
    rows = [json.loads(x) for x in lines]
    rows[3]["propensity"] = 0
    rows[7]["clicked"] = 3
    rows[9]["position"] = "2"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    r = run("validate", "--banners", str(small_province / "banners.json"), "--impressions", str(bad))
    assert r.returncode == 1
    assert f"{bad}:4: field 'propensity'" in r.stderr
    assert f"{bad}:8: field 'clicked'" in r.stderr
    assert f"{bad}:10: field 'position'" in r.stderr


def test_validate_warns_of_banners_outside_the_catalog_and_passes(tmp_path, small_province):
    """A log naming banners the catalog does not hold (as shown banners or candidates) is
    valid: the warning counts the impressions that name one, and the exit code is 0."""
    lines = (small_province / "impressions.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    rows = [json.loads(x) for x in lines]
    first, last = rows[0]["request_id"], rows[-1]["request_id"]
    assert first != last
    mine = [r for r in rows if r["request_id"] == first]
    mine[0]["banner_id"] = "b-new-banner"  # shown
    for r in mine:
        r["candidates"] = [x["banner_id"] for x in mine] + ["b-retired-banner"]  # listed, never shown
    rows[-1]["banner_id"] = "b-new-banner"  # shown by another request, without a list
    named = len(mine) + 1
    imp = tmp_path / "imp.jsonl"
    imp.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    r = run("validate", "--banners", str(small_province / "banners.json"), "--impressions", str(imp))
    assert r.returncode == 0, r.stderr
    assert f"warning: {named} impressions name 2 banner(s) outside" in r.stdout, r.stdout
    assert "b-new-banner, b-retired-banner" in r.stdout and "cold-start" in r.stdout


def test_simulate_prints_a_summary(tmp_path):
    r = run("simulate", "--out", str(tmp_path / "p"), "--staff", "300", "--days", "1")
    assert r.returncode == 0, r.stderr
    for words in ("staff", "impressions", "position 1", "survey", "click rate"):
        assert words in r.stdout


def test_simulate_takes_a_setting_and_its_knobs(tmp_path):
    r = run("simulate", "--out", str(tmp_path / "p"), "--staff", "300", "--days", "1", "--setting", "many-banners",
            "--banners", "40", "--base-logit", "-3.5", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["banners"] == 40
    assert summary["config"]["base_logit"] == -3.5 and summary["config"]["personal_scale"] == 1.0
    r = run("simulate", "--out", str(tmp_path / "q"), "--staff", "300", "--days", "1", "--setting", "nowhere")
    assert r.returncode != 0 and "invalid choice" in r.stderr
