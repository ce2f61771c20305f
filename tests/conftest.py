import os
from pathlib import Path

import pytest

os.environ.setdefault("RECOMMENDER_PROGRESS", "0")


@pytest.fixture(scope="session")
def small_province(tmp_path_factory) -> Path:
    """A small simulated province (5,000 staff, 3 days), shared by the tests that only read it."""
    from simulator import SimulationConfig, simulate

    out = tmp_path_factory.mktemp("province")
    simulate(out, SimulationConfig(staff=5000, days=3, seed=11))
    return out
