"""User-facing tools, run as `python -m tools.<name>` and importable by the tests: compiling a
config ahead of time for a TPU topology (`tools.tpu_compile`), training the project's feature
networks (`tools.train_feature_extractors`), reading the rows per device of a recipe's compiled
program (`tools.hlo_rows`). `benchmarks/` holds measurements only."""
