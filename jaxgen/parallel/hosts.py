"""Multi-host runs: joining the cluster, which process writes, gathering results to the host,
and the preemption sync point that makes every process stop at the same step.

A run of N processes (one per TPU VM of a pod slice, or N processes on one machine) executes
the same program on every process; each holds a slice of the global batch (`global_batch`).
Only the primary process (index 0) writes files other than checkpoints, which every process
writes together.
"""

import contextlib
import os
import socket
import sys
import threading
import time

import jax
import numpy as np
from jax.experimental import multihost_utils


class ClusterError(RuntimeError):
    """This process could not join the multi-host run."""


def initialize_distributed(
    coordinator: str = "",
    num_processes: int = 0,
    process_id: int = -1,
    *,
    join_timeout: float = 300.0,
    heartbeat_timeout: int = 100,
    say=None,
) -> None:
    """Join a multi-host run; a no-op when already joined.

    With `coordinator` ("HOST:PORT", the address of process 0) this process is `process_id` of
    `num_processes`; CPU devices then talk over gloo (how several processes on one machine form
    one cluster). Without it JAX detects the cluster itself (TPU pods, SLURM, ...). Must run
    before anything asks JAX for its devices. While waiting for the other processes, `say`
    (default: print to stderr) gets a progress line every `join_timeout / 10` s (at most 30 s);
    after `join_timeout` s this process ends with one `error:` line and exit status 2 (JAX's own
    timeout would abort it with a C++ stack). `heartbeat_timeout`: seconds after which the
    cluster gives up on a process that stopped answering."""
    if jax.distributed.is_initialized():
        return
    if coordinator:
        _check_membership(coordinator, num_processes, process_id)
        if process_id == 0:
            _check_port_free(coordinator)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        kwargs = dict(coordinator_address=coordinator, num_processes=num_processes)
        kwargs["process_id"] = process_id
        who = f"process {process_id} of {num_processes}"
        where = f"the cluster at {coordinator} as {who}"
    else:
        kwargs, who = {}, "this process"
        where = "an auto-detected cluster (TPU pod / SLURM)"
    # JAX's timeout (whole seconds) a little later than ours, which ends the wait cleanly
    kwargs.update(
        initialization_timeout=int(join_timeout) + 30, heartbeat_timeout_seconds=heartbeat_timeout
    )
    with _join_watch(who, coordinator or "the cluster", join_timeout, say):
        try:
            jax.distributed.initialize(**kwargs)
        except Exception as e:  # noqa: BLE001 - one line naming the cluster is the useful part
            first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
            raise ClusterError(f"could not join {where}: {first}") from None


def _check_membership(coordinator: str, num_processes: int, process_id: int) -> None:
    """`ClusterError` for a coordinator that is not HOST:PORT or an index outside the run."""
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(
            f"train.coordinator={coordinator!r}: expected HOST:PORT (process 0's address and a "
            "free port, e.g. 10.0.0.2:12355)"
        )
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ClusterError(
            f"train.coordinator={coordinator!r} needs train.num_processes >= 1 and "
            f"0 <= train.process_id < num_processes (got {num_processes}, {process_id})"
        )


def _check_port_free(coordinator: str) -> None:
    """Process 0 serves the cluster at the coordinator's port: `ClusterError` when another
    program (another job's coordinator) already listens there on this machine."""
    port = int(coordinator.rpartition(":")[2])
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed run's TIME_WAIT
        try:
            s.bind(("", port))
        except OSError as e:
            raise ClusterError(
                f"train.coordinator={coordinator!r}: port {port} is in use on this machine "
                f"({e.strerror}; another job's coordinator?); choose another port"
            ) from None


@contextlib.contextmanager
def _join_watch(who: str, where: str, timeout: float, say):
    """Within the block, a thread prints `WHO waiting for the others at WHERE, N s ...` at
    intervals, and after `timeout` s prints one `error:` line and ends the process (exit
    status 2): the block is a join that blocks in C++ and cannot be interrupted from Python."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    done, t0 = threading.Event(), time.monotonic()
    every = max(5.0, min(30.0, timeout / 10))

    def watch():
        while not done.wait(every):
            waited = time.monotonic() - t0
            if waited >= timeout:
                say(
                    f"error: {who}: the other processes did not join "
                    f"within train.join_timeout={timeout:g} s (are all of them started, each "
                    "with its own train.process_id and the same train.coordinator?)"
                )
                os._exit(2)
            say(
                f"{who} waiting for the others at {where}, {waited:.0f} s of "
                f"train.join_timeout={timeout:g} s"
            )

    thread = threading.Thread(target=watch, daemon=True, name="jaxgen-join-watch")
    thread.start()
    try:
        yield
    finally:
        done.set()


def gather_texts(text: str) -> list[str]:
    """Every process's `text`, in process order (a collective on multi-host runs)."""
    if jax.process_count() == 1:
        return [text]
    data = np.frombuffer(text.encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.asarray([data.size], np.int32))
    padded = np.zeros(int(np.max(sizes)), np.uint8)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded))
    return [bytes(r[: int(n)]).decode() for r, n in zip(rows, np.ravel(sizes), strict=True)]


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
