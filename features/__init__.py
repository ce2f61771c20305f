"""One feature definition shared by training and serving (see features.definition)."""
