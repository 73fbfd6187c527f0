"""The generic sharded, jitted training step with a non-finite guard."""

from collections.abc import Callable

import jax

from jaxgen.parallel.mesh import batch_sharding, replicated, stacked_batch_sharding
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


def make_sharded_step(step_fn: Callable, mesh, *, steps_per_call: int = 1, donate: bool = True):
    """`jax.jit` of the guarded step: batch sharded over the mesh's `data` axis, state replicated
    and donated (its buffers are reused for the new state).

    With `steps_per_call > 1` the jitted function takes K stacked batches `[K, B, ...]` and runs
    the K guarded steps in one `lax.scan` (one dispatch and one host sync per K steps; metrics
    come back stacked `[K]`). K may be smaller than `steps_per_call` on the last call. On CPU the
    scan is unrolled: XLA:CPU leaves a convolution inside a loop body un-rewritten (the
    weight-gradient conv stays a naive `convolution` instead of a library call; jax#12868), which
    measured 16x slower per step for a small conv net here. Unrolling costs 3-4x compile time.
    """
    if steps_per_call < 1:
        raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
    rep = replicated(mesh)
    guarded = guard_nonfinite(step_fn)
    if steps_per_call == 1:
        fn, batch_spec = guarded, batch_sharding(mesh)
    else:
        unroll = mesh.devices.flat[0].platform == "cpu"
        fn, batch_spec = (
            (lambda state, batches: jax.lax.scan(guarded, state, batches, unroll=unroll)),
            (stacked_batch_sharding(mesh)),
        )
    return jax.jit(
        fn,
        in_shardings=(rep, batch_spec),
        out_shardings=(rep, rep),
        donate_argnums=(0,) if donate else (),
    )
