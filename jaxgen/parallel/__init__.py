"""Meshes, shardings and multi-host helpers."""

from jaxgen.parallel.hosts import (
    ClusterError,
    agreed,
    any_process,
    barrier,
    gather_texts,
    initialize_distributed,
    is_primary,
    preemption_point,
    to_host,
)
from jaxgen.parallel.mesh import (
    DATA_AXIS,
    batch_sharding,
    global_batch,
    make_mesh,
    replicated,
    shard_over_batch,
    state_shardings,
)

__all__ = [
    "DATA_AXIS",
    "ClusterError",
    "agreed",
    "any_process",
    "barrier",
    "batch_sharding",
    "gather_texts",
    "global_batch",
    "initialize_distributed",
    "is_primary",
    "make_mesh",
    "preemption_point",
    "replicated",
    "shard_over_batch",
    "state_shardings",
    "to_host",
]
