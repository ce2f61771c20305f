"""Training: datasets from logs, model fitting, metrics, artifacts, offline evaluation."""
