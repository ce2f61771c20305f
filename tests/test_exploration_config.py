"""The arms' exploration in the service config: the policy, its parameters, their
defaults from [arms], and errors that name the key; /readyz shows what each arm runs."""
from __future__ import annotations

import pytest

from recommender.exploration import BOLTZMANN, EPSILON_GREEDY, Exploration
from service.config import ConfigError, parse_config


def arms(**sections) -> list:
    return parse_config({"arms": sections}).arms


def test_epsilon_greedy_stays_the_default():
    (a,) = arms()
    assert a.explorer == Exploration(EPSILON_GREEDY, 0.1)
    (a,) = arms(A={"share": 1.0, "epsilon": 0.2})
    assert a.explorer == Exploration(EPSILON_GREEDY, 0.2)


def test_boltzmann_per_arm_and_as_the_default():
    a, b = arms(A={"share": 0.5}, B={"share": 0.5, "exploration": "boltzmann", "temperature": 0.5, "depth": 2,
                                     "epsilon": 0.05})
    assert a.explorer == Exploration(EPSILON_GREEDY, 0.1)
    assert b.explorer == Exploration(BOLTZMANN, 0.05, 0.5, 2)
    a, b = arms(exploration="boltzmann", temperature=2, epsilon=0.3, A={"share": 0.5},
                B={"share": 0.5, "exploration": "epsilon-greedy"})
    assert a.explorer == Exploration(BOLTZMANN, 0.3, 2.0, 3)
    assert b.explorer == Exploration(EPSILON_GREEDY, 0.3)
    (a,) = arms(exploration="boltzmann", depth=5)
    assert a.explorer == Exploration(BOLTZMANN, 0.1, 1.0, 5)


@pytest.mark.parametrize("section,message", [
    ({"A": {"share": 1.0, "exploration": "softmax"}}, '[arms.A] exploration: must be "epsilon-greedy" or "boltzmann"'),
    ({"exploration": 3}, "[arms] exploration: must be"),
    ({"A": {"share": 1.0, "epsilon": 1.5}}, "[arms.A] epsilon: must be a number in [0, 1]"),
    ({"epsilon": "lots"}, "[arms] epsilon: must be a number"),
    ({"A": {"share": 1.0, "exploration": "boltzmann", "temperature": 0}}, "[arms.A] temperature: must be a number above 0"),
    ({"A": {"share": 1.0, "exploration": "boltzmann", "temperature": float("inf")}}, "[arms.A] temperature:"),
    ({"A": {"share": 1.0, "exploration": "boltzmann", "temperature": "hot"}}, "[arms.A] temperature:"),
    ({"A": {"share": 1.0, "exploration": "boltzmann", "depth": 0}}, "[arms.A] depth: must be a whole number"),
    ({"A": {"share": 1.0, "exploration": "boltzmann", "depth": 1.5}}, "[arms.A] depth:"),
    ({"A": {"share": 1.0, "exploration": "boltzmann", "depth": True}}, "[arms.A] depth:"),
    ({"A": {"share": 1.0, "temperature": 0.5}}, "[arms.A] temperature: only Boltzmann exploration has one"),
    ({"A": {"share": 1.0, "depth": 2}}, "[arms.A] depth: only Boltzmann exploration has one"),
    ({"A": {"share": 1.0, "explore": "boltzmann"}}, "[arms.A]: unknown key(s) explore"),
])
def test_config_errors_name_the_key(section, message):
    with pytest.raises(ConfigError) as e:
        parse_config({"arms": section})
    assert message in str(e.value)


def test_models_serve_each_arm_with_its_exploration(tmp_path):
    """No model promoted: both arms answer with the operators' order, each exploring its own way."""
    from service.models import ArmModels
    from training.registry import ModelRegistry

    cfg = parse_config({"arms": {"A": {"share": 0.5}, "B": {"share": 0.5, "exploration": "boltzmann", "depth": 2}}})
    models = ArmModels(cfg.arms, ModelRegistry(tmp_path), seed=1)
    models.reload()
    assert models["A"].ranker.exploration == Exploration(EPSILON_GREEDY, 0.1)
    assert models["B"].ranker.exploration == Exploration(BOLTZMANN, 0.1, 1.0, 2)
    assert models["B"].arm.explorer.describe() == {"exploration": "boltzmann", "epsilon": 0.1, "temperature": 1.0,
                                                    "depth": 2}
    assert models["A"].arm.explorer.describe() == {"exploration": "epsilon-greedy", "epsilon": 0.1}


def test_retrain_judges_the_policies_with_the_arms_exploration(tmp_path):
    import argparse

    from cli.commands.retrain import where

    cfg = tmp_path / "service.toml"
    cfg.write_text('[arms.A]\nshare = 0.5\n[arms.B]\nshare = 0.5\nexploration = "boltzmann"\ntemperature = 0.5\n',
                   encoding="utf-8")
    args = lambda arm, eps=None: argparse.Namespace(config=str(cfg), arm=arm, epsilon=eps, db=None, registry=None)  # noqa: E731
    assert where(args("A"))[2] == Exploration(EPSILON_GREEDY, 0.1)
    assert where(args("B"))[2] == Exploration(BOLTZMANN, 0.1, 0.5, 3)
    assert where(args("B", 0.3))[2] == Exploration(BOLTZMANN, 0.3, 0.5, 3)
    with pytest.raises(ValueError, match="epsilon"):
        where(args("B", 1.3))
