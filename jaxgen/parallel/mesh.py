"""Data-parallel mesh over all devices (every host), and the shardings the trainer uses.

The batch is split along the mesh axis `data`; the training state is replicated.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed() -> None:
    """Join a multi-host run (TPU pod / multi-node GPU). A no-op when already initialised."""
    if jax.distributed.is_initialized():
        return
    jax.distributed.initialize()


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D `data` mesh over the first `num_devices` devices (all devices when None)."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices must be in [1, {len(devices)}], got {n}")
    return Mesh(np.asarray(devices[:n]), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of K stacked batches `[K, B, ...]`: split along the batch axis, not along K."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def global_batch(local_batch, mesh: Mesh, *, stacked: bool = False):
    """Assemble this host's slice of a batch (a pytree of numpy arrays) into global arrays.

    On one host this is a sharded `device_put`; on many hosts each contributes its rows.
    `stacked=True`: leaves are `[K, b, ...]` (K consecutive batches), sharded along axis 1.
    """
    sharding = stacked_batch_sharding(mesh) if stacked else batch_sharding(mesh)
    if jax.process_count() == 1:
        return jax.device_put(local_batch, sharding)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
