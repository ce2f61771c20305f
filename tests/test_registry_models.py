"""The model registry (promote, rollback, list) and A/B arm assignment."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.main import main
from service.arms import Arm, ArmAssigner, unit_hash
from training.registry import ModelRegistry, RegistryError

from service_support import add_fake_model


def test_promote_and_rollback(tmp_path):
    reg = ModelRegistry(tmp_path)
    for v in ("v1", "v2", "v3"):
        add_fake_model(tmp_path, v)
    assert reg.resolve("A") is None
    assert reg.promote("v1", verify=False) is None
    assert reg.promote("v2", verify=False) == "v1"
    assert reg.promote("v3", "B", verify=False) is None
    assert reg.state()["arms"] == {"A": "v2", "B": "v3"}
    assert reg.rollback("A") == ("v2", "v1")
    assert reg.resolve("A") == "v1"
    with pytest.raises(RegistryError, match="no earlier version"):
        reg.rollback("A")  # v1 had no predecessor: not without asking for the operators' order
    assert reg.resolve("A") == "v1"
    assert reg.rollback("A", to_fallback=True) == ("v1", None)
    assert reg.resolve("A") is None and reg.resolve("B") == "v3"
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback("A")
    assert {m.version: m.arms for m in reg.list()} == {"v1": [], "v2": [], "v3": ["B"]}


def test_promote_refuses_unknown_and_unsafe_versions(tmp_path):
    reg = ModelRegistry(tmp_path)
    with pytest.raises(RegistryError, match="no model"):
        reg.promote("v9", verify=False)
    for bad in ("../etc", "a/b", "", ".hidden"):
        with pytest.raises(RegistryError, match="invalid model version"):
            reg.promote(bad, verify=False)


def test_promote_verifies_the_folder(tmp_path):
    """Without training/ artifacts the check fails: promote refuses and says why."""
    reg = ModelRegistry(tmp_path)
    add_fake_model(tmp_path, "v1")  # metadata.json without checksums
    with pytest.raises(RegistryError, match="fails its checks"):
        reg.promote("v1")
    assert reg.resolve("A") is None


def test_models_commands(tmp_path, capsys):
    add_fake_model(tmp_path, "v1")
    add_fake_model(tmp_path, "v2")
    reg = ModelRegistry(tmp_path)
    reg.promote("v1", verify=False)
    assert main(["models", "--models", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert "v1" in out and "v2" in out and "A" in out
    assert main(["models", "--models", str(tmp_path), "promote", "v2", "--arm", "B", "--no-verify"]) == 0
    assert reg.resolve("B") == "v2"
    assert main(["models", "--models", str(tmp_path), "rollback", "--arm", "B"]) == 1
    assert "no earlier version" in capsys.readouterr().err and reg.resolve("B") == "v2"
    assert main(["models", "--models", str(tmp_path), "rollback", "--arm", "B", "--to-fallback"]) == 0
    assert reg.resolve("B") is None
    assert main(["models", "--models", str(tmp_path), "rollback", "--arm", "B"]) == 1
    assert "nothing to roll back" in capsys.readouterr().err
    assert main(["models", "--models", str(tmp_path), "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {m["version"] for m in listed} == {"v1", "v2"}


def test_arm_assignment_is_stable_and_follows_shares():
    arms = [Arm("A", 0.8), Arm("B", 0.2)]
    a1, a2 = ArmAssigner(arms, "salt-1"), ArmAssigner(list(arms), "salt-1")
    ids = [f"s-{i}" for i in range(20000)]
    got = [a1.assign(s) for s in ids]
    assert got == [a2.assign(s) for s in ids]  # another process/replica: same answer
    share_b = got.count("B") / len(got)
    assert abs(share_b - 0.2) < 0.015  # binomial sd is 0.003
    other = [ArmAssigner(arms, "salt-2").assign(s) for s in ids]
    assert other != got  # the salt reshuffles


def test_arm_config_is_checked():
    with pytest.raises(ValueError, match="add up to 1"):
        ArmAssigner([Arm("A", 0.5), Arm("B", 0.2)], "s")
    with pytest.raises(ValueError, match="duplicate"):
        ArmAssigner([Arm("A", 0.5), Arm("A", 0.5)], "s")


@settings(max_examples=200)
@given(st.text(max_size=40), st.text(max_size=40))
def test_unit_hash_is_in_the_unit_interval(salt, staff):
    u = unit_hash(salt, staff)
    assert 0.0 <= u < 1.0 and u == unit_hash(salt, staff)


def test_load_refuses_metadata_that_names_another_feature_definition(small_click_model, tmp_path):
    from training.artifact import ArtifactError, load_model

    folder = small_click_model.save(tmp_path / "v1", {"version": "v1"})
    assert load_model(folder).version == "v1"
    meta = json.loads((folder / "metadata.json").read_text())
    meta["feature_definition"]["config"]["half_life_days"] = 3.0  # copied from another model, say
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="another feature definition"):
        load_model(folder)


def _reload_to(bad, small_click_model, small_province, tmp_path):
    """A service serving ``small_click_model`` as "good", asked to reload to the model
    ``bad`` (an artifact): the reload's report, and the version served after it."""
    from recommender.store import open_store
    from service.config import parse_config
    from service.engine import RankingEngine

    models = tmp_path / "models"
    small_click_model.save(models / "good", {"version": "good"})
    bad.save(models / "bad", {"version": "bad"})
    cfg = parse_config({"service": {"db": "events.db", "models": "models",
                                    "banners": str(small_province / "banners.json"),
                                    "staff": str(small_province / "staff.csv")},
                        "keys": {"admin": ["a"]}}, tmp_path)
    reg = ModelRegistry(models)
    reg.promote("good")
    engine = RankingEngine(cfg, open_store(cfg.db), registry=reg)
    engine.start(background=False)
    try:
        assert engine.rank("s-000001").result.model_version == "good"
        reg.promote("bad")
        report = engine.reload()
        return report, engine.rank("s-000001").result.model_version
    finally:
        engine.close()


def test_a_trained_model_with_nan_weights_is_refused_by_the_service(small_click_model, small_province, tmp_path):
    """It loads (its checksums match), but every ranking would fall back: refused at reload."""
    import copy

    import numpy as np

    from training.artifact import ModelArtifact

    broken = copy.deepcopy(small_click_model.estimator)
    broken.coef_[0, :5] = np.nan
    report, served = _reload_to(ModelArtifact(small_click_model.encoder, broken, "logistic"),
                                small_click_model, small_province, tmp_path)
    assert not report.ok and report.arms["A"]["status"] == "kept"
    assert "not finite" in report.arms["A"]["error"]
    assert served == "good"


def test_models_list_and_show_say_what_a_version_is(small_click_model, tmp_path, capsys):
    meta = {"version": "v1", "created": "2026-03-09T01:02:03+00:00", "kind": "logistic",
            "training_data": {"from": "2026-03-02T00:00:00+00:00", "to": "2026-03-08T23:59:00+00:00", "rows": 1200},
            "validation": {"logistic": {"log_loss": 0.2345, "clicks@3": 0.1812}},
            "offline_ab": {"against": "v0", "difference": {"value": 0.0123, "ci_low": 0.004, "ci_high": 0.02}}}
    small_click_model.save(tmp_path / "v1", meta)
    ModelRegistry(tmp_path).promote("v1")
    assert main(["models", "--models", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert "2026-03-02T00:00 .. 2026-03-08T23:59" in out and "0.2345" in out and "+0.0123" in out and "vs v0" in out
    assert main(["models", "--models", str(tmp_path), "show", "v1"]) == 0
    shown = capsys.readouterr().out
    assert "model v1 (logistic)" in shown and "serving arms: A" in shown and "half_life_days" in shown
    assert main(["models", "--models", str(tmp_path), "show", "v9"]) == 1
    assert "no model 'v9'" in capsys.readouterr().err


def test_a_model_whose_history_features_decay_otherwise_is_refused(small_click_model, small_province, tmp_path):
    """The service's click history decays with the features' default half-life: a model
    defined with another would score, but wrongly, so the probe refuses it."""
    import copy
    from dataclasses import replace

    from training.artifact import ModelArtifact

    encoder = copy.deepcopy(small_click_model.encoder)
    encoder.config = replace(encoder.config, half_life_days=14.0)
    report, served = _reload_to(ModelArtifact(encoder, small_click_model.estimator, "logistic"),
                                small_click_model, small_province, tmp_path)
    assert not report.ok and "half-life of 14 days" in report.arms["A"]["error"]
    assert served == "good"
