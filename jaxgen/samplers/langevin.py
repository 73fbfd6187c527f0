"""Short-run Langevin dynamics over any pytree of chain variables, inside `jit` (`lax.scan`).

One step (docs/methods/shortrun_ebm.md eq. 1.3, with the step and the noise scale separate):

    x_{k+1} = x_k − step_k ∇ₓE(x_k) + noise_std ω_k,    ω_k ~ N(0, I),

where `energy_fn` maps a batch of chains to per-chain energies `[B]` and p ∝ e^{−E}. The thesis's
Euler–Maruyama discretisation of dx = −½∇E dt + dw is `thesis_setting(η)`: step = η/2 and
noise_std = √η; noise_std = 0 is the noise-free residual flow of eq. 1.8. Chains never interact
(E is a sum of per-chain terms), so a batch of chains sharded over devices stays sharded.

The chain state is a pytree whose leaves share the leading batch axis B (VAEBM moves a latent
and an image-noise array together). With `differentiable=True` the result keeps its dependence
on whatever `energy_fn` closes over (the generator loss of eq. 1.13 differentiates through the
unrolled dynamics; second-order); otherwise each step is `stop_gradient`-ed. `checkpoint=True`
recomputes each step in the backward pass instead of storing it: the backward keeps the K chain
states and one step's activations instead of every step's activations.
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

EnergyFn = Callable  # pytree of [B, ...] -> [B]


def thesis_setting(eta: float) -> dict:
    """The thesis's discretisation of the Langevin SDE (eq. 1.3): `step=η/2`, `noise_std=√η`,
    as keywords of `langevin`. (Short-run EBMs use a noise scale far below √η; spec'd runs set
    `step` and `noise_std` directly.)"""
    if not eta > 0:
        raise ValueError(f"eta must be > 0, got {eta}")
    return {"step": eta / 2.0, "noise_std": math.sqrt(eta)}


def per_chain_sq_norm(tree) -> jax.Array:
    """Σ over every leaf's non-batch axes of the squares: `[B]`."""
    leaves = jax.tree_util.tree_leaves(tree)
    return sum(jnp.sum(jnp.square(v).reshape(v.shape[0], -1), axis=1) for v in leaves)


def _steps(step, num_steps: int) -> jax.Array:
    """The step size of every iteration `[K]`: a number (constant) or a schedule `[K]`."""
    steps = jnp.asarray(step, jnp.float32)
    if steps.ndim == 0:
        if not isinstance(step, jax.core.Tracer) and not float(step) > 0:
            raise ValueError(f"langevin: step must be > 0, got {step}")
        return jnp.full((num_steps,), steps)
    if steps.shape != (num_steps,):
        raise ValueError(
            f"langevin: a step schedule must have shape ({num_steps},) (one per step), "
            f"got {steps.shape}"
        )
    if not isinstance(step, jax.core.Tracer) and not bool(jnp.all(steps > 0)):
        raise ValueError(f"langevin: every step of the schedule must be > 0, got {step}")
    return steps


def _check(x0, num_steps, noise_std) -> None:
    """One `ValueError` for K < 1, noise_std < 0 or chain leaves without a common batch axis."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int | np.integer) or num_steps < 1:
        raise ValueError(f"langevin: num_steps (K) must be an int >= 1, got {num_steps!r}")
    if not isinstance(noise_std, jax.core.Tracer) and not float(noise_std) >= 0:
        raise ValueError(f"langevin: noise_std must be >= 0 (0: noise-free), got {noise_std}")
    leaves = jax.tree_util.tree_leaves(x0)
    if not leaves or any(v.ndim == 0 for v in leaves) or len({v.shape[0] for v in leaves}) != 1:
        shapes = [tuple(v.shape) for v in leaves]
        raise ValueError(f"langevin: every chain leaf needs the same leading axis B, got {shapes}")


def langevin(
    energy_fn: EnergyFn,
    x0,
    key,
    *,
    num_steps: int,
    step=0.1,
    noise_std=0.0,
    differentiable: bool = False,
    checkpoint: bool = False,
    unroll: int | bool = 1,
    bounds: tuple[float, float] | None = None,
):
    """`num_steps` Langevin steps from the chains `x0`.

    Args:
      energy_fn: pytree of `[B, ...]` arrays -> energies `[B]` (one per chain).
      x0: the initial chains, a pytree of `[B, ...]` arrays.
      key: PRNG key of the noise (unused when noise_std is 0).
      num_steps: K >= 1, a Python int.
      step: the coefficient on ∇E (> 0), a number or a schedule `[K]`.
      noise_std: the noise scale (>= 0; 0 skips the draws).
      differentiable: keep the dependence of x_K on what `energy_fn` closes over.
      checkpoint: `jax.checkpoint` each step (recompute in the backward pass).
      unroll: `lax.scan`'s unroll (True: all K steps in one loop body). On XLA:CPU a conv energy's
        step runs about 4× slower inside a while loop than unrolled (docs/results.md,
        "Short-run EBMs on Fashion-MNIST"); the result is the same.
      bounds: `(lo, hi)` clamps every chain leaf to [lo, hi] after each step (images: the data
        box [-1, 1]); None (ch. 5) leaves the chains free.

    Returns:
      `(x_K, trace)`: the final chains (same pytree as `x0`) and `trace["energy"]`,
      `trace["grad_norm"]`, `[K]` batch means of E(x_k) and ‖∇E(x_k)‖ at each step's start.
    """
    _check(x0, num_steps, noise_std)
    if bounds is not None and not float(bounds[0]) < float(bounds[1]):
        raise ValueError(f"langevin: bounds must be (lo, hi) with lo < hi, got {bounds}")
    num_steps = int(num_steps)
    steps = _steps(step, num_steps)
    noisy = isinstance(noise_std, jax.core.Tracer) or float(noise_std) > 0
    num_leaves = len(jax.tree_util.tree_leaves(x0))

    # the sum is what is differentiated; the per-chain energies come out as its aux, so the loop
    # body holds no reduction over the batch (sharded over devices, a batch mean inside the loop
    # is an all-reduce at every step; the trace is averaged once, after the scan)
    def summed_energy(x):
        energies = energy_fn(x)
        return jnp.sum(energies), energies

    value_and_grad = jax.value_and_grad(summed_energy, has_aux=True)

    def one_step(x, inputs):
        step_k, key_k = inputs
        if not differentiable:
            x = jax.lax.stop_gradient(x)
        (_, energies), g = value_and_grad(x)
        x = jax.tree_util.tree_map(lambda v, gv: v - step_k * gv, x, g)
        if noisy:
            leaves, treedef = jax.tree_util.tree_flatten(x)
            ks = jax.random.split(key_k, num_leaves)
            leaves = [
                v + noise_std * jax.random.normal(k, v.shape, v.dtype)
                for v, k in zip(leaves, ks, strict=True)
            ]
            x = jax.tree_util.tree_unflatten(treedef, leaves)
        if bounds is not None:
            x = jax.tree_util.tree_map(lambda v: jnp.clip(v, *bounds), x)
        g_norms = jnp.sqrt(per_chain_sq_norm(jax.lax.stop_gradient(g)))
        return x, {"energy": jax.lax.stop_gradient(energies), "grad_norm": g_norms}

    body = jax.checkpoint(one_step) if checkpoint else one_step
    keys = jax.random.split(key, num_steps)
    x, per_chain = jax.lax.scan(body, x0, (steps, keys), unroll=unroll)
    trace = jax.tree_util.tree_map(lambda v: jnp.mean(v, axis=1), per_chain)  # [K, B] -> [K]
    if not differentiable:
        x = jax.lax.stop_gradient(x)
    return x, trace
