"""Moved to `tools/tpu_compile.py` (a user-facing tool, not a measurement): run
`python -m tools.tpu_compile ...`. This shim keeps the old command working for one release."""

import sys

from tools.tpu_compile import main

if __name__ == "__main__":
    print(
        "benchmarks.tpu_compile moved: run `python -m tools.tpu_compile ...` (this shim goes next "
        "release)",
        file=sys.stderr,
    )
    main()
