"""A synthetic province: staff, banners, a ground-truth click model and logged traffic.

Used to develop and judge ranking where no real logs exist. Only evaluation code may
read the ground truth; nothing that learns or ranks may depend on it.
"""
from .groundtruth import GroundTruth
from .run import SETTINGS, SimulationConfig, SimulationSummary, setting_config, simulate

__all__ = ["GroundTruth", "SETTINGS", "SimulationConfig", "SimulationSummary", "setting_config", "simulate"]
