"""The `recommender` command line: the top of the house. It is the one place that puts the
core, training, the service and the simulator together; nothing imports it."""
