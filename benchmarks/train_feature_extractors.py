"""Moved to `tools/train_feature_extractors.py` (a user-facing tool, not a measurement): run
`python -m tools.train_feature_extractors ...`. This shim keeps the old command working for one
release."""

import sys

from tools.train_feature_extractors import main

if __name__ == "__main__":
    print(
        "benchmarks.train_feature_extractors moved: run "
        "`python -m tools.train_feature_extractors ...` (this shim goes next release)",
        file=sys.stderr,
    )
    main()
