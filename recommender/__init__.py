"""Personalized banner ranking engine: the core (domain, contracts, eligibility, simulator, CLI)."""

__version__ = "0.1.0"
