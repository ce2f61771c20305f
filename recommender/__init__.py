"""The core of the banner ranking engine: domain types, the file contracts, eligibility,
the greedy order and exploration, the Ranker, and the event store. It imports only
features/; training, the service and the command line build on it."""

__version__ = "0.1.0"
