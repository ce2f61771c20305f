"""The training report: written with every model, its numbers those of metadata.json, one
self-contained page whose plots are inline SVG, and the offline A/B section."""
import json
import re
import xml.etree.ElementTree as ET

import pytest

from recommender.contracts import load_banners, load_impressions, load_staff
from recommender.timeutil import parse_ts
from training import report_data
from training.ope.evaluate import EvaluationResult
from training.report import OfflineAB, render_training_report, write_training_report
from training.train import TrainConfig, train

UNTIL = parse_ts("2026-03-04T00:00:00+09:00")  # the small province's first two days: one to fit, one to validate


@pytest.fixture(scope="module")
def inputs(small_province):
    staff = load_staff(small_province / "staff.csv")
    catalog = load_banners(small_province / "banners.json")
    log = load_impressions(small_province / "impressions.jsonl", catalog=catalog)
    return staff, catalog, log.subset(log.ts < UNTIL)


@pytest.fixture(scope="module")
def trained(inputs, tmp_path_factory):
    staff, catalog, log = inputs
    return train(staff, catalog, log, tmp_path_factory.mktemp("models"), TrainConfig(models=("logistic",), seed=3))


def _cells(page: str, row_pattern: str) -> dict[str, list[str]]:
    """Table rows of the page as first cell -> the other cells' text."""
    out = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page):
        cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
        if cells and re.fullmatch(row_pattern, cells[0]):
            out[cells[0]] = cells[1:]
    return out


def _svgs(page: str) -> list[str]:
    return ["<svg" + s.split("</svg>")[0] + "</svg>" for s in page.split("<svg")[1:]]


def test_report_is_written_and_named_in_the_metadata(trained):
    meta = json.loads((trained.path / "metadata.json").read_text(encoding="utf-8"))
    assert meta["report"] == "report.html"
    assert (trained.path / "report.html").is_file()
    assert meta["version"] in (trained.path / "report.html").read_text(encoding="utf-8")


def test_numbers_match_the_metadata(trained):
    meta = json.loads((trained.path / "metadata.json").read_text(encoding="utf-8"))
    page = (trained.path / "report.html").read_text(encoding="utf-8")
    data = {k: v[0] for k, v in _cells(page, r"[a-z].*").items()}
    td = meta["training_data"]
    for label, key in (("impressions (rows)", "rows"), ("requests", "requests"), ("staff", "staff"), ("banners", "banners"),
                       ("training rows", "train_rows"), ("validation rows", "validation_rows"),
                       ("rows fitted (non-clicks downsampled)", "fit_rows")):
        assert data[label] == f"{td[key]:,}", label
    assert data["clicks"].startswith(f"{td['clicks']:,} (")
    assert data["data window (UTC)"] == f"{td['from']} to {td['to']}"
    assert data["validation from (UTC)"] == td["validation_from"]
    chosen = meta["kind"]
    models = _cells(page, r"logistic|gbm|popularity")
    assert set(models) == set(meta["validation"])
    for kind, cells in models.items():
        m = meta["validation"][kind]
        assert cells[:4] == [f"{m['log_loss']:.4g}", f"{m['auc']:.4g}", f"{m['ndcg@3']:.4g}", f"{m['clicks@3']:.4g}"]
        assert ("chosen" in cells[4]) == (kind == chosen)
    # the calibration bins cover every validation row
    assert sum(b.rows for b in trained.report.calibration) == td["validation_rows"]


def test_self_contained_with_inline_svg_plots(trained):
    page = (trained.path / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # the SVG namespace is a name, not a resource; nothing else may point at the network
    outside = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in outside and "https://" not in outside
    for needle in ("<script", "<link", "<img", "<iframe", "<object", "<embed", "src=", "url(", "@import"):
        assert needle not in page
    svgs = _svgs(page)
    assert len(svgs) == 1 + 4 + 1 + 1  # days, four click-rate charts, calibration, features
    for s in svgs:
        ET.fromstring(s)  # well-formed
    for title in ("by position", "by banner category", "by role", "by school level"):
        assert title in page


def test_linear_features_are_named_columns(trained):
    rep = trained.report
    assert rep.importance_method == "weight x spread" and 0 < len(rep.importance) <= 15
    assert all(f.feature != "log(position)" for f in rep.importance)
    effects = [abs(f.effect) for f in rep.importance]
    assert effects == sorted(effects, reverse=True)
    enc = trained.artifact.encoder
    nc = len(enc.category_vocab_) + 1
    start, _ = enc.blocks_["rolex category"]
    col = start + enc.attr_vocab_["role"]["teacher"] * nc + enc.category_vocab_["survey"]
    assert enc.column_name(col) == "role x category: teacher x survey"
    assert enc.column_name(enc.blocks_["attr:role"][0]) == "role: unknown"


def test_tree_model_gets_permutation_importance(inputs, tmp_path, monkeypatch):
    staff, catalog, log = inputs
    monkeypatch.setattr(report_data, "PERMUTATION_ROWS", 3000)
    res = train(staff, catalog, log, None, TrainConfig(models=("gbm",), gbm_iterations=15, seed=3))
    rep = res.report
    assert res.path is None and rep.importance_method == "permutation"
    assert rep.importance and "position" not in {f.feature for f in rep.importance}
    path = write_training_report(tmp_path / "report.html", rep)
    assert "Permutation importance" in path.read_text(encoding="utf-8")


def _evaluation(version: str) -> dict:
    def est(v):
        return {e: {"value": v, "ci_low": v - 0.01, "ci_high": v + 0.01} for e in ("ips", "snips", "dm", "dr")}

    res = EvaluationResult(n_requests=1234, slots=3, policies={version: est(0.31), "popularity": est(0.16)},
                           differences={f"popularity-{version}": est(-0.15)}, warnings=["a warning"])
    return res.to_json()


def test_offline_ab_section(trained, tmp_path):
    version = trained.report.version
    ev = _evaluation(version)
    assert EvaluationResult.from_json(ev).to_json() == ev
    page = write_training_report(tmp_path / "r.html", trained.report,
                                 OfflineAB(ev, "promoted", "It gets more clicks than the serving model.")).read_text(encoding="utf-8")
    assert "Offline A/B decision" in page and "Promoted" in page and "more clicks than the serving model" in page
    assert f"{version} · DR" in page and "a warning" in page
    assert len(_svgs(page)) == len(_svgs(render_training_report(trained.report))) + 2  # estimates and differences
    with pytest.raises(ValueError, match="promoted, undecided, kept"):
        OfflineAB(ev, "shipped", "no such decision")
