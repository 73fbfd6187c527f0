"""The generic sharded, jitted training step with a non-finite guard."""

from collections.abc import Callable

import jax

from jaxgen.parallel.mesh import batch_sharding, replicated
from jaxgen.train.state import all_finite, select_tree


def guard_nonfinite(step_fn: Callable) -> Callable:
    """Wrap `step_fn(state, batch) -> (state, metrics)` so that a NaN/Inf in any metric (loss,
    gradient norm) or in the new state keeps the old state; `metrics["finite"]` says which."""

    def guarded(state, batch):
        new_state, metrics = step_fn(state, batch)
        ok = all_finite(metrics) & all_finite(new_state)
        return select_tree(ok, new_state, state), {**metrics, "finite": ok}

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
