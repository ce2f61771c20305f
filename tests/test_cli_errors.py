"""Input the commands cannot use: one line naming the file (and the line) and what to do,
exit code 2 (validate: 1, its code for files that break their contract), no traceback."""
import json

import pytest

from cli.main import main

KOREAN = "교사"  # written as CP949, the encoding a Korean spreadsheet may save in


def _files(small_province, tmp_path, **override):
    files = {"staff": small_province / "staff.csv", "banners": small_province / "banners.json",
             "impressions": small_province / "impressions.jsonl"}
    files.update(override)
    return files


def _train(files, tmp_path, *extra):
    return main(["train", "--staff", str(files["staff"]), "--banners", str(files["banners"]),
                 "--impressions", str(files["impressions"]), "--out", str(tmp_path / "models"), "--models", "logistic",
                 *extra])


def _evaluate(files, *extra):
    return main(["evaluate", "--staff", str(files["staff"]), "--banners", str(files["banners"]),
                 "--impressions", str(files["impressions"]), "--policy", "popularity", "--bootstrap", "10", *extra])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _not_utf8(tmp_path, small_province, kind):
    """A copy of one of the province's files whose line 3 starts with Korean text in CP949."""
    src = {"staff": small_province / "staff.csv", "banners": small_province / "banners.json"}.get(
        kind, small_province / "impressions.jsonl")
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)[:50]
    if kind == "csv":  # the same rows as CSV
        cols = ["request_id", "ts", "staff_id", "banner_id", "position", "propensity", "clicked"]
        lines = [",".join(cols) + "\n"] + [",".join(str(r[c]) for c in cols) + "\n" for r in map(json.loads, lines)]
    data = [x.encode("utf-8") for x in lines]
    data[2] = KOREAN.encode("cp949") + data[2]
    path = tmp_path / (src.name if kind in ("staff", "banners") else f"imp.{kind}")
    path.write_bytes(b"".join(data))
    return path


@pytest.mark.parametrize("kind", ["staff", "banners", "jsonl", "csv"])
def test_a_file_that_is_not_utf8_is_one_clear_error(small_province, tmp_path, capsys, kind):
    bad = _not_utf8(tmp_path, small_province, kind)
    files = _files(small_province, tmp_path, **{"staff" if kind == "staff" else "banners" if kind == "banners"
                                                else "impressions": bad})
    assert _train(files, tmp_path) == 2
    err = _one_line(capsys)
    assert err.startswith(f"error: {bad}:3: ") and "not UTF-8" in err and "save the file as UTF-8" in err
    assert _evaluate(files) == 2
    assert _one_line(capsys).startswith(f"error: {bad}:3: ")
    assert main(["validate", f"--{'impressions' if kind in ('jsonl', 'csv') else kind}", str(bad)]) == 1
    assert f"{bad}:3: field '<row>': not UTF-8" in capsys.readouterr().err


def test_a_log_too_short_for_the_hold_out_says_what_to_do(small_province, tmp_path, capsys):
    lines = (small_province / "impressions.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:3000]
    imp = tmp_path / "short.jsonl"
    imp.write_text("".join(lines), encoding="utf-8")
    files = _files(small_province, tmp_path, impressions=imp)
    assert _train(files, tmp_path) == 2
    err = _one_line(capsys)
    assert err.startswith(f"error: {imp}: the log spans ") and "too little time to hold out 1 day(s)" in err
    assert "--holdout-days" in err
    assert _train(files, tmp_path, "--holdout-days", "0.01") == 0  # holding out less works


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_an_empty_log_is_one_clear_error(small_province, tmp_path, capsys, suffix):
    imp = tmp_path / f"empty.{suffix}"
    imp.write_text("", encoding="utf-8")
    files = _files(small_province, tmp_path, impressions=imp)
    assert _train(files, tmp_path) == 2
    assert _one_line(capsys) == f"error: {imp}: no impressions to train on: give a log with impressions"
    assert _evaluate(files) == 2
    assert _one_line(capsys).startswith(f"error: {imp}: no impressions to evaluate")
    assert main(["validate", "--impressions", str(imp)]) == 1
    assert f"{imp}: no impressions" in capsys.readouterr().err


def test_a_log_without_clicks_is_one_clear_error(small_province, tmp_path, capsys):
    rows = [json.loads(x) for x in (small_province / "impressions.jsonl").read_text(encoding="utf-8").splitlines()[:3000]]
    for r in rows:
        r["clicked"] = 0
    imp = tmp_path / "no-clicks.jsonl"
    imp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    files = _files(small_province, tmp_path, impressions=imp)
    assert _evaluate(files) == 2
    err = _one_line(capsys)
    assert err.startswith(f"error: {imp}: the 3,000 impressions to fit a click model on have no click")


CONFIG_COMMANDS = [
    ["serve", "--config", "{}"],
    ["store", "prune", "--config", "{}"],
    ["store", "forget", "s-1", "--config", "{}"],
    ["models", "--config", "{}", "list"],
    ["retrain", "--config", "{}"],
    ["arms", "--config", "{}", "status"],
    ["goals", "--config", "{}"],
]
BAD_CONFIGS = {  # the file's text (None: no file), and what the one line must say
    "missing": (None, "cannot read the config"),
    "not TOML": ("[service\nport = 1\n", "not valid TOML"),
    "a bad field": ('[service]\nport = "eighty"\n', "[service] port: must be a whole number"),
    "a bad arm": ("[arms.A]\nshare = 1.0\nepsilon = 2\n", "[arms.A] epsilon: must be a number in [0, 1]"),
    "a loader that does not import": ('[service]\nmodel_loader = "no_such_module:load"\n',
                                      "[service] model_loader"),
}


@pytest.mark.parametrize("bad", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("command", CONFIG_COMMANDS, ids=lambda c: " ".join(x for x in c if x != "{}"))
def test_a_bad_config_is_one_line_naming_the_file_and_exit_2(tmp_path, capsys, command, bad):
    text, says = BAD_CONFIGS[bad]
    if "model_loader" in says and command[0] not in ("models", "arms"):
        pytest.skip("only the commands that load models import the loader")
    path = tmp_path / "service.toml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    assert main([x.format(path) for x in command]) == 2
    err = _one_line(capsys)
    assert err.startswith(f"error: {path}: ") and says in err, err


def test_serve_without_api_keys_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RECOMMENDER_ADMIN_KEYS", raising=False)
    monkeypatch.delenv("RECOMMENDER_CLIENT_KEYS", raising=False)
    path = tmp_path / "service.toml"
    path.write_text("[service]\nport = 8000\n", encoding="utf-8")
    assert main(["serve", "--config", str(path)]) == 2
    assert _one_line(capsys).startswith(f"error: {path}: no admin API key")
