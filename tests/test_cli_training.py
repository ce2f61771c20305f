"""train, rank and quality as data staff run them."""
import json
import subprocess
import sys

from recommender.contracts import load_rankings, load_requests, write_requests
from recommender.domain import Request


def run(*args):
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True)


def test_train_rank_quality(tmp_path, small_province):
    p = small_province
    until = "2026-03-04T00:00:00+09:00"
    r = run("train", "--staff", str(p / "staff.csv"), "--banners", str(p / "banners.json"),
            "--impressions", str(p / "impressions.jsonl"), "--until", until, "--out", str(tmp_path / "models"),
            "--models", "logistic")
    assert r.returncode == 0, r.stderr
    assert "popularity" in r.stdout and "clicks@3" in r.stdout
    model = next((tmp_path / "models").iterdir())
    meta = json.loads((model / "metadata.json").read_text())
    assert meta["training_data"]["to"] < "2026-03-03T15:00:00+00:00"  # nothing at or after --until
    reqs = [Request(f"q{i}", 1772600000.0 + i, f"s-{i:06d}") for i in range(50)]
    reqs.append(Request("q-explicit", 1772600000.0, "s-000001", ("b-info-01", "b-unknown", "b-policy-03")))
    reqs.append(Request("q-stranger", 1772600000.0, "nobody"))
    write_requests(tmp_path / "req.jsonl", reqs)
    r = run("rank", "--model", str(model), "--staff", str(p / "staff.csv"), "--banners", str(p / "banners.json"),
            "--history", str(p / "impressions.jsonl"), "--requests", str(tmp_path / "req.jsonl"), "--out", str(tmp_path / "out.jsonl"))
    assert r.returncode == 0, r.stderr
    assert "1 candidate id(s) outside" in r.stdout and "b-unknown" in r.stdout
    out = {x.request_id: x.ranking for x in load_rankings(tmp_path / "out.jsonl")}
    assert set(out) == {x.request_id for x in load_requests(tmp_path / "req.jsonl")}
    assert set(out["q-explicit"]) == {"b-info-01", "b-unknown", "b-policy-03"}  # the unknown id as a cold-start banner
    assert len(out["q-stranger"]) > 0
    r = run("quality", "--province", str(p), "--model", str(model), "--since", until)
    assert r.returncode == 0, r.stderr
    for name in ("random", "popularity", "attribute_oracle", "oracle", "captured"):
        assert name in r.stdout


def test_rank_refuses_a_tampered_model(tmp_path, small_province):
    p = small_province
    r = run("train", "--staff", str(p / "staff.csv"), "--banners", str(p / "banners.json"),
            "--impressions", str(p / "impressions.jsonl"), "--out", str(tmp_path / "m"), "--models", "logistic")
    assert r.returncode == 0, r.stderr
    model = next((tmp_path / "m").iterdir())
    with open(model / "model.joblib", "ab") as f:
        f.write(b"x")
    write_requests(tmp_path / "req.jsonl", [Request("q", 1772600000.0, "s-000001")])
    r = run("rank", "--model", str(model), "--staff", str(p / "staff.csv"), "--banners", str(p / "banners.json"),
            "--requests", str(tmp_path / "req.jsonl"), "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2
    assert "checksum mismatch" in r.stdout + r.stderr
