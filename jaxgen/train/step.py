"""The generic sharded, jitted training step with a non-finite guard."""

from collections.abc import Callable

import jax

from jaxgen.parallel.mesh import batch_sharding, replicated
from jaxgen.train.state import all_finite


def guard_nonfinite(step_fn: Callable) -> Callable:
    """Wrap `step_fn(state, batch) -> (state, metrics)` so that a NaN/Inf in any metric keeps
    the old state; `metrics["finite"]` says which.

    Recipes report the loss and the global gradient norm, so a non-finite gradient anywhere is
    caught. Only the metrics are checked (not every leaf of the new state) and the choice is a
    `lax.cond`: for small models the guard is then nearly free (measured in
    `benchmarks/step_throughput.py`)."""

    def guarded(state, batch):
        new_state, metrics = step_fn(state, batch)
        ok = all_finite(metrics)
        kept = jax.lax.cond(ok, lambda: new_state, lambda: state)
        return kept, {**metrics, "finite": ok}

    return guarded


def make_sharded_step(step_fn: Callable, mesh, *, donate: bool = True) -> Callable:
    """`jax.jit` of the guarded step: batch sharded over the mesh's `data` axis, state replicated
    and donated (its buffers are reused for the new state)."""
    rep = replicated(mesh)
    return jax.jit(
        guard_nonfinite(step_fn),
        in_shardings=(rep, batch_sharding(mesh)),
        out_shardings=(rep, rep),
        donate_argnums=(0,) if donate else (),
    )
