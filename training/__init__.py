"""Training: datasets from logs, model fitting, metrics, model artifacts and their
registry, and offline evaluation (training.ope)."""
