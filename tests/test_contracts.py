"""Data contracts: round trips and one clear error per kind of bad row."""
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recommender.contracts import (
    load_banners,
    load_impressions,
    load_rankings,
    load_requests,
    load_staff,
    write_banners,
    write_impressions,
    write_rankings,
    write_requests,
    write_staff,
)
from recommender.domain import Banner, Ranking, Request, Staff
from recommender.errors import ContractError

text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12)
ident = st.from_regex(r"[a-z0-9\-]{1,10}", fullmatch=True)
korean = st.text(alphabet=st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3), min_size=0, max_size=20)
epoch = st.integers(min_value=1_600_000_000, max_value=1_900_000_000).map(float)
CATALOG = [Banner("b1", "policy", "정책"), Banner("b2", "survey", "설문"), Banner("b3", "event", "행사")]


def banners_file(tmp_path: Path) -> Path:
    p = tmp_path / "banners.json"
    write_banners(p, CATALOG)
    return p


def good_row(**over):
    row = {"request_id": "r-1", "ts": "2024-05-02T08:41:07+09:00", "staff_id": "s-17", "banner_id": "b1",
           "position": 1, "propensity": 0.82, "clicked": 0, "policy": "popularity"}
    row.update(over)
    return row


def write_lines(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False))
            f.write("\n")
    return path


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(ident, text, text, korean), min_size=1, max_size=20, unique_by=lambda t: t[0]))
def test_staff_round_trip(tmp_path, rows):
    staff = [Staff(sid, {"role": r.strip(), "school_level": lv.strip(), "region": g.strip()}) for sid, r, lv, g in rows]
    p = tmp_path / "staff.csv"
    write_staff(p, staff)
    loaded = load_staff(p)
    assert [loaded.get(s.staff_id).attributes for s in staff] == [dict(s.attributes) for s in staff]


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(ident, st.sampled_from(["policy", "info", "custom", "survey", "event"]), korean,
                          st.none() | epoch, st.booleans(), st.integers(-5, 5), st.lists(ident, max_size=3)),
                min_size=1, max_size=10, unique_by=lambda t: t[0]))
def test_banners_round_trip_keeps_korean(tmp_path, rows):
    banners = [Banner(bid, cat, title, start, None if start is None else start + 86400,
                      {"role": ("teacher",)} if pin else {}, pin, prio, tuple(tags))
               for bid, cat, title, start, pin, prio, tags in rows]
    p = tmp_path / "banners.json"
    write_banners(p, banners)
    assert list(load_banners(p)) == banners


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(ident, epoch, ident, st.sampled_from(["b1", "b2", "b3"]),
                          st.floats(min_value=1e-6, max_value=1.0), st.integers(0, 1)),
                min_size=1, max_size=30, unique_by=lambda t: t[0]))
def test_impressions_round_trip(tmp_path, rows):
    from recommender.timeutil import format_ts

    dicts = [{"request_id": rid, "ts": format_ts(ts), "staff_id": sid, "banner_id": bid, "position": 1,
              "propensity": p, "clicked": c} for rid, ts, sid, bid, p, c in rows]
    path = tmp_path / "imp.jsonl"
    write_impressions(path, dicts)
    log = load_impressions(path)
    assert list(log.iter_rows()) == dicts


def test_requests_and_rankings_round_trip(tmp_path):
    reqs = [Request("r1", 1.7e9, "s1"), Request("r2", 1.7e9 + 5, "s2", ("b1", "b2"))]
    write_requests(tmp_path / "q.jsonl", reqs)
    assert load_requests(tmp_path / "q.jsonl") == reqs
    ranks = [Ranking("r1", ("b2", "b1"))]
    write_rankings(tmp_path / "o.jsonl", ranks)
    assert load_rankings(tmp_path / "o.jsonl") == ranks


def test_timestamps_are_normalised_to_utc(tmp_path):
    p = write_lines(tmp_path / "i.jsonl", [good_row(ts="2024-05-02T09:00:00+09:00"),
                                           good_row(request_id="r-2", ts="2024-05-02T00:00:00Z")])
    log = load_impressions(p)
    assert log.ts[0] == log.ts[1]


BAD_ROWS = [
    ({"drop": "propensity"}, "propensity", "missing field"),
    ({"position": "1"}, "position", "integer"),
    ({"position": 0}, "position", "1 or more"),
    ({"propensity": 0}, "propensity", "(0, 1]"),
    ({"propensity": 1.5}, "propensity", "(0, 1]"),
    ({"propensity": "0.5"}, "propensity", "number"),
    ({"clicked": 2}, "clicked", "0 or 1"),
    ({"ts": "yesterday"}, "ts", "unparseable"),
    ({"ts": "2024-05-02T08:41:07"}, "ts", "no UTC offset"),
    ({"staff_id": 17}, "staff_id", "non-empty string"),
]


@pytest.mark.parametrize("change,field,words", BAD_ROWS)
def test_each_bad_impression_row_names_file_line_and_field(tmp_path, change, field, words):
    catalog = load_banners(banners_file(tmp_path))
    bad = good_row(request_id="r-2")
    if "drop" in change:
        del bad[change["drop"]]
    else:
        bad.update(change)
    p = write_lines(tmp_path / "imp.jsonl", [good_row(), bad])
    with pytest.raises(ContractError) as e:
        load_impressions(p, catalog=catalog)
    err = e.value.errors[0]
    assert (err.file, err.line, err.field) == (str(p), 2, field)
    assert words in err.message
    assert f"{p}:2: field '{field}'" in str(e.value)


def test_bad_csv_impression_row(tmp_path):
    p = tmp_path / "imp.csv"
    p.write_text("request_id,ts,staff_id,banner_id,position,propensity,clicked\n"
                 "r1,2024-05-02T08:41:07+09:00,s1,b1,1,0.5,0\n"
                 "r2,2024-05-02T08:41:07+09:00,s1,b1,first,0.5,0\n", encoding="utf-8")
    with pytest.raises(ContractError) as e:
        load_impressions(p)
    assert (e.value.errors[0].line, e.value.errors[0].field) == (3, "position")


def test_cross_row_rules(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [good_row(), good_row(banner_id="b2", position=1)])
    with pytest.raises(ContractError, match="position 1 appears twice"):
        load_impressions(p)
    p = write_lines(tmp_path / "b.jsonl", [good_row(), good_row(position=2)])
    with pytest.raises(ContractError, match="banner 'b1' appears twice"):
        load_impressions(p)
    p = write_lines(tmp_path / "c.jsonl", [good_row(), good_row(banner_id="b2", position=2, staff_id="other")])
    with pytest.raises(ContractError, match="another staff_id"):
        load_impressions(p)


def test_invalid_json_line_is_an_error_not_a_skip(tmp_path):
    p = write_lines(tmp_path / "i.jsonl", [good_row(), '{"request_id": "r-9", ', good_row(request_id="r-3")])
    with pytest.raises(ContractError) as e:
        load_impressions(p)
    assert e.value.errors[0].line == 2


def test_many_errors_are_collected_up_to_a_limit(tmp_path):
    rows = [good_row(request_id=f"r{i}", clicked=5) for i in range(10)]
    p = write_lines(tmp_path / "i.jsonl", rows)
    with pytest.raises(ContractError) as e:
        load_impressions(p, max_errors=4)
    assert [x.line for x in e.value.errors] == [1, 2, 3, 4]
    assert e.value.truncated


def test_staff_errors(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("staff_id,role,school_level,region\ns1,teacher,high,Suwon\ns1,principal,middle,Paju\n", encoding="utf-8")
    with pytest.raises(ContractError) as e:
        load_staff(p)
    assert (e.value.errors[0].line, e.value.errors[0].field) == (3, "staff_id")
    assert "duplicate" in e.value.errors[0].message
    p.write_text("staff_id,role,region\ns1,teacher,Suwon\n", encoding="utf-8")
    with pytest.raises(ContractError, match="school_level"):
        load_staff(p)
    p.write_text("staff_id,role,school_level,region\ns1,teacher,high\n", encoding="utf-8")
    with pytest.raises(ContractError) as e:
        load_staff(p)
    assert (e.value.errors[0].line, e.value.errors[0].field) == (2, "region")


def test_extra_staff_columns_are_attributes(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("staff_id,role,school_level,region,subject\ns1,teacher,high,Suwon,수학\n", encoding="utf-8")
    d = load_staff(p)
    assert d.attribute_names == ("role", "school_level", "region", "subject")
    assert d.get("s1").get("subject") == "수학"
    assert d.get("nobody").get("role") == ""


def test_banner_errors(tmp_path):
    cases = [
        ({"banner_id": "a", "category": "policy"}, {"banner_id": "a", "category": "info"}, "banner_id", "duplicate"),
        ({"banner_id": "a", "category": "policy"}, {"banner_id": "b"}, "category", "missing"),
        ({"banner_id": "a", "category": "policy"}, {"banner_id": "b", "category": "info", "start": "soon"}, "start", "unparseable"),
        ({"banner_id": "a", "category": "policy"}, {"banner_id": "b", "category": "info", "priority": "high"}, "priority", "integer"),
        ({"banner_id": "a", "category": "policy"}, {"banner_id": "b", "category": "info", "target": {"role": "teacher"}}, "target.role", "list"),
        ({"banner_id": "a", "category": "policy"}, {"banner_id": "b", "category": "info", "start": "2024-05-02T00:00:00Z",
                                                     "end": "2024-05-01T00:00:00Z"}, "end", "after start"),
    ]
    for first, second, field, words in cases:
        p = tmp_path / "b.json"
        p.write_text("[\n" + json.dumps(first) + ",\n" + json.dumps(second) + "\n]\n", encoding="utf-8")
        with pytest.raises(ContractError) as e:
            load_banners(p)
        err = e.value.errors[0]
        assert (err.line, err.field) == (3, field), (second, err)
        assert words in err.message


def test_banners_json_lines_and_defaults(tmp_path):
    p = tmp_path / "b.jsonl"
    p.write_text('{"banner_id": "a", "category": "policy", "title": "안내"}\n\n{"banner_id": "b", "category": "event"}\n', encoding="utf-8")
    cat = load_banners(p)
    assert cat.ids == ["a", "b"]
    b = cat.get("a")
    assert (b.start, b.end, b.pinned, b.priority, b.tags, b.is_targeted()) == (None, None, False, 0, (), False)


def test_a_json_lines_file_may_start_with_a_byte_order_mark(tmp_path):
    """As CSV and JSON array files may: some editors write one."""
    catalog = load_banners(banners_file(tmp_path))
    p = tmp_path / "imp.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + (json.dumps(good_row()) + "\n").encode("utf-8"))
    assert len(load_impressions(p, catalog=catalog)) == 1
