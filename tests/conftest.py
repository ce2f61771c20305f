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


@pytest.fixture(scope="session")
def small_click_model(small_province):
    """A logistic click model fitted on the whole small province (not saved)."""
    from recommender.contracts import load_banners, load_impressions, load_staff
    from training.train import fit_click_model

    staff = load_staff(small_province / "staff.csv")
    catalog = load_banners(small_province / "banners.json")
    return fit_click_model(staff, catalog, load_impressions(small_province / "impressions.jsonl", catalog=catalog))
