"""Multi-host runs: joining the cluster, which process writes, gathering results to the host,
and the preemption sync point that makes every process stop at the same step.

A run of N processes (one per TPU VM of a pod slice, or N processes on one machine) executes
the same program on every process; each holds a slice of the global batch (`global_batch`).
Only the primary process (index 0) writes files other than checkpoints, which every process
writes together.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils


class ClusterError(RuntimeError):
    """This process could not join the multi-host run."""


def initialize_distributed(
    coordinator: str = "", num_processes: int = 0, process_id: int = -1
) -> None:
    """Join a multi-host run; a no-op when already joined.

    With `coordinator` ("HOST:PORT", the address of process 0) this process is `process_id` of
    `num_processes`; CPU devices then talk over gloo (how several processes on one machine form
    one cluster). Without it JAX detects the cluster itself (TPU pods, SLURM, ...). Must run
    before anything asks JAX for its devices."""
    if jax.distributed.is_initialized():
        return
    if coordinator:
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise ClusterError(
                f"train.coordinator={coordinator!r} needs train.num_processes >= 1 and "
                f"0 <= train.process_id < num_processes (got {num_processes}, {process_id})"
            )
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        kwargs = dict(coordinator_address=coordinator, num_processes=num_processes)
        kwargs["process_id"] = process_id
        where = f"the cluster at {coordinator} as process {process_id} of {num_processes}"
    else:
        kwargs, where = {}, "an auto-detected cluster (TPU pod / SLURM)"
    try:
        jax.distributed.initialize(**kwargs)
    except Exception as e:  # noqa: BLE001 - one line naming the cluster is the useful part
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise ClusterError(f"could not join {where}: {first}") from None


def is_primary() -> bool:
    """Whether this process writes logs, figures and records (process 0)."""
    return jax.process_index() == 0


def to_host(tree):
    """Numpy copies of a pytree of arrays on every process: arrays spread over several
    processes are gathered (a collective: every process must call this), replicated ones are
    read from a local replica."""

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


def preemption_point(step: int) -> bool:
    """True on every process at the same `step` once any of them received SIGTERM (JAX's
    preemption sync; `step` must increase by the same sequence on every process). False on a
    single-process run."""
    if jax.process_count() == 1:
        return False
    return bool(multihost_utils.reached_preemption_sync_point(step))


def any_process(flag: bool) -> bool:
    """Whether `flag` is true on any process (a collective on multi-host runs)."""
    if jax.process_count() == 1:
        return bool(flag)
    flags = multihost_utils.process_allgather(np.asarray([int(bool(flag))], np.int32))
    return bool(np.any(flags))


def agreed(fn, what: str):
    """`fn()`, with every process of a multi-host run learning whether it failed anywhere: the
    process that failed raises its own error, the others a `ClusterError` naming `what`, so
    no process is left waiting in a collective for one that stopped."""
    try:
        out, error = fn(), None
    except Exception as e:  # noqa: BLE001 - re-raised below, on every process
        out, error = None, e
    if any_process(error is not None) and error is None:
        error = ClusterError(f"{what} failed on another process (see process 0's log)")
    if error is not None:
        raise error
    return out


def barrier(name: str) -> None:
    """Wait until every process reaches this point (no-op on one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)
