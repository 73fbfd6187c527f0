"""Joining a multi-host run from the CLI: the cluster's timeouts, one check that every process
runs the same config, the line for a lost process, and exiting without the cluster's shutdown
barrier (docs/operating.md, "Multi-host faults")."""

import json
import math
import os
import sys

import jax

from jaxgen.methods.common import ConfigError
from jaxgen.parallel import gather_texts, initialize_distributed


def join(c) -> None:
    """Join the multi-host cluster of `c.train`, then check that every process runs the same
    config (one collective, before any other)."""
    t = c.train
    for f in ("join_timeout", "heartbeat_timeout"):
        if not (math.isfinite(t[f]) and t[f] > 0):
            raise ConfigError(f"config.train.{f}={t[f]!r}: must be finite and > 0")
    initialize_distributed(
        t.coordinator,
        t.num_processes,
        t.process_id,
        join_timeout=float(t.join_timeout),
        heartbeat_timeout=int(math.ceil(t.heartbeat_timeout)),
    )
    check_same_config(c)


# fields that may differ between the processes of one run
PER_PROCESS_FIELDS = ("train.process_id", "train.progress")


def check_same_config(c) -> None:
    """`ConfigError` on every process when the processes of a multi-host run were started with
    different configs (a field other than `PER_PROCESS_FIELDS`), naming the first fields that
    differ from process 0's; a no-op on one process."""
    mine = {k: v for k, v in _flat(c.to_dict()).items() if k not in PER_PROCESS_FIELDS}
    texts = gather_texts(json.dumps(mine, sort_keys=True, default=str))
    configs = [json.loads(t) for t in texts]
    for index, other in enumerate(configs[1:], start=1):
        keys = sorted(set(configs[0]) | set(other))
        differ = [k for k in keys if configs[0].get(k) != other.get(k)]
        if differ:
            shown = "; ".join(
                f"{k} is {configs[0].get(k)!r} on process 0, {other.get(k)!r} on process {index}"
                for k in differ[:3]
            )
            more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
            raise ConfigError(
                f"the processes run different configs: {shown}{more}; start every process with "
                "the same command (only train.process_id differs)"
            )


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# what JAX's collectives and coordination service say when another process of the run is gone
# (an orbax "Timed out while waiting for ... barrier" after a kill -9 is one of them)
_PEER_LOST = (
    "Gloo",
    "heartbeat",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "Connection closed",
    "barrier",
)


def peer_lost_line(e: BaseException) -> str | None:
    """On a joined multi-host run, the line for an error that says another process stopped
    (a collective or the coordination service failed); None otherwise."""
    text = str(e)
    if not jax.distributed.is_initialized() or not any(
        w.lower() in text.lower() for w in _PEER_LOST
    ):
        return None
    first = text.splitlines()[0] if text else type(e).__name__
    first = first if len(first) <= 200 else first[:200] + "…"
    return (
        f"process {jax.process_index()}: another process of this run stopped ({first}); every "
        "process stops. Find why in that process's output, then run the same command on every "
        "process: it resumes from the last checkpoint"
    )


def exit_now(code: int) -> None:
    """End a process that joined a cluster without the cluster's shutdown barrier, which waits
    for the other processes (up to a heartbeat timeout) and floods stderr when one is gone."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
