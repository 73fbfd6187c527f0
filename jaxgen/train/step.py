"""The generic sharded, jitted training step with a non-finite guard."""

from collections.abc import Callable

import jax
from jax.extend.core import Jaxpr, subjaxprs

from jaxgen.optim import all_finite
from jaxgen.parallel.mesh import batch_sharding, replicated, stacked_batch_sharding


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


def make_sharded_step(
    step_fn: Callable,
    mesh,
    *,
    state_sharding=None,
    steps_per_call: int = 1,
    donate: bool = True,
):
    """`jax.jit` of the guarded step: batch sharded over the mesh's `data` axis, the state laid
    out by `state_sharding` (a pytree of shardings, e.g. `state_shardings(...)`; replicated when
    None) and donated (its buffers are reused for the new state). The step is traced under the
    mesh, so `shard_over_batch` inside it splits the arrays it creates over `data`.

    With `steps_per_call > 1` the jitted function takes K stacked batches `[K, B, ...]` and runs
    the K guarded steps in one `lax.scan` (one dispatch and one host sync per K steps; metrics
    come back stacked `[K]`). K may be smaller than `steps_per_call` on the last call.
    """
    if steps_per_call < 1:
        raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}")
    rep = replicated(mesh)
    state_spec = rep if state_sharding is None else state_sharding
    guarded = guard_nonfinite(step_fn)
    if steps_per_call == 1:
        body, batch_spec = guarded, batch_sharding(mesh)
    else:
        cpu = mesh.devices.flat[0].platform == "cpu"

        def body(state, batches):
            return jax.lax.scan(
                guarded, state, batches, unroll=cpu and _has_conv(guarded, state, batches)
            )

        batch_spec = stacked_batch_sharding(mesh)

    def fn(state, batch):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return body(state, batch)

    return jax.jit(
        fn,
        in_shardings=(state_spec, batch_spec),
        out_shardings=(state_spec, rep),
        donate_argnums=(0,) if donate else (),
    )


def make_sharded_sampler(sample_fn: Callable, mesh):
    """`jax.jit` of `sample_fn(state, num, key)` (`num` static) traced under `mesh`, so the
    draws the sampler makes (`jaxgen.methods.common.batch_normal`) and everything computed from
    them are split over the mesh's `data` axis: each device runs `num / devices` samples.
    Put the state on the mesh replicated (`replicated(mesh)`) before calling."""

    def fn(state, num, key):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return sample_fn(state, num, key=key)

    return jax.jit(fn, static_argnums=1)


def _has_conv(step_fn: Callable, state, batches) -> bool:
    """Whether one step (on `batches[0]`) contains a convolution. On CPU such steps are unrolled
    in the K-step scan: XLA:CPU leaves a convolution inside a loop body un-rewritten (the weight
    gradient stays a naive `convolution`, not a library call; jax#12868), measured 16x slower per
    step for a small conv net here. Steps without one stay rolled: unrolled, the 2-D MLP measured
    10% slower per step (and compiles 3-4x slower)."""
    first = jax.tree.map(lambda b: b[0], batches)
    return _jaxpr_has_conv(jax.make_jaxpr(step_fn)(state, first).jaxpr)


def _jaxpr_has_conv(jaxpr: Jaxpr) -> bool:
    if any(e.primitive.name == "conv_general_dilated" for e in jaxpr.eqns):
        return True
    return any(_jaxpr_has_conv(sub) for sub in subjaxprs(jaxpr))
