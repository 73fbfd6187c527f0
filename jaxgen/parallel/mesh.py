"""Data-parallel mesh over all devices (every host), and the shardings the trainer uses.

The batch is split along the mesh axis `data`; the training state is replicated.
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None, *, devices=None) -> Mesh:
    """A 1-D `data` mesh over the first `num_devices` of `devices` (default `jax.devices()`,
    every host's; all of them when `num_devices` is None). `devices` may be the devices of a
    TPU topology description, to compile ahead of time for hardware this machine lacks
    (`tools/tpu_compile.py`)."""
    devices = jax.devices() if devices is None else list(devices)
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


def shard_over_batch(tree):
    """Split the arrays a step creates (noise that starts a chain or a flow) along their first
    axis over the `data` axis of the mesh the step is traced under; a no-op outside one.

    Without this, an array drawn from the (replicated) key inside a sharded step is computed
    whole on every device: FDRL's K-step training flow ran on the global batch per device."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA_AXIS not in mesh.axis_names:
        return tree
    spec = PartitionSpec(DATA_AXIS)
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, spec), tree)


def state_shardings(abstract_state, mesh: Mesh, batch_fields: tuple[str, ...] = ()):
    """Shardings for a state pytree by rule: leaves under the top-level fields `batch_fields`
    (persistent chains, replay buffers: leading axis = examples) split over `data`, every other
    leaf (parameters, optimizer state, step, key) replicated. `abstract_state` may be
    `jax.eval_shape(init, ...)`. A batch leaf whose leading axis the mesh does not divide is a
    `ValueError` naming it."""
    n = mesh.shape[DATA_AXIS]

    def rule(path, leaf):
        top = _field_name(path[0]) if path else ""
        if top not in batch_fields:
            return replicated(mesh)
        shape = getattr(leaf, "shape", ())
        if not shape or shape[0] % n:
            name = jax.tree_util.keystr(path)
            raise ValueError(
                f"state{name} has shape {shape}: its leading axis must be divisible by the "
                f"{n} devices of `data`"
            )
        return batch_sharding(mesh)

    return jax.tree_util.tree_map_with_path(rule, abstract_state)


def _field_name(key) -> str:
    for attr in ("name", "key"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)
