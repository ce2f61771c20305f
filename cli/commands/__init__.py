"""Subcommands of the `recommender` CLI, one module each."""
