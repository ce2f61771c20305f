"""Offline A/B evaluation: counterfactual estimates of a ranking policy's clicks per
request from logged traffic (IPS, self-normalised IPS, direct method, doubly robust),
with bootstrap intervals resampled by request, paired differences, diagnostics and an
HTML report. See docs/offline-evaluation.md."""
from .data import LoggedBandit, build_bandit
from .estimators import IPS, SNIPS, DirectMethod, DoublyRobust, Estimate
from .policies import TargetPolicy

__all__ = ["IPS", "SNIPS", "DirectMethod", "DoublyRobust", "Estimate", "LoggedBandit", "TargetPolicy", "build_bandit"]
