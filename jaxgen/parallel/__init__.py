"""Meshes, shardings and multi-host helpers."""

from jaxgen.parallel.mesh import (
    DATA_AXIS,
    batch_sharding,
    global_batch,
    initialize_distributed,
    make_mesh,
    replicated,
    shard_over_batch,
    state_shardings,
)

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "global_batch",
    "initialize_distributed",
    "make_mesh",
    "replicated",
    "shard_over_batch",
    "state_shardings",
]
