"""Meshes, shardings and multi-host helpers."""

from jaxgen.parallel.mesh import (
    batch_sharding,
    global_batch,
    initialize_distributed,
    make_mesh,
    replicated,
)

__all__ = ["batch_sharding", "global_batch", "initialize_distributed", "make_mesh", "replicated"]
