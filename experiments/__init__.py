"""Command-line experiments: `python -m experiments.{train,sample,evaluate}` (see README)."""
