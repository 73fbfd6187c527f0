"""Command-line experiments: `python -m experiments.{train,sample,evaluate}` (see README).

Each CLI's `main` applies `jaxgen.runtime.reuse_host_memory()` (XLA:CPU steps then reuse their
temporary buffers instead of page-faulting them in on every call); importing this package does
not.
"""
