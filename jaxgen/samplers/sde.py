"""Euler–Maruyama integration of dx = drift(x) dt + sqrt(2γ) dw inside `jit` (`lax.scan`).

Written in the particle form of FDRL paper eq. (9) (Heng et al.; docs/methods/fdrl.md eq. (8)):

    x_{k+1} = x_k + η drift(x_k) + ν ξ_k,    ξ_k ~ N(0, I),    ν = sqrt(2γη).

`drift` maps a batch `[N, ...]` to `[N, ...]`; examples never interact, so a batch of particles
is a batch of independent chains. No host round trip per step: one compiled loop.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp


def noise_scale(gamma: float, step_size: float) -> float:
    """ν = sqrt(2γη): the per-step noise of the SDE with diffusion coefficient γ
    (docs/methods/fdrl.md eq. (8))."""
    return float(jnp.sqrt(2.0 * gamma * step_size))


def euler_maruyama(
    drift: Callable,
    x0,
    key,
    *,
    num_steps: int,
    step_size: float,
    noise: float,
    save_every: int = 0,
):
    """`num_steps` steps from `x0` `[N, ...]`. Returns `(x_K, stats)` with `stats["nfe"]` (drift
    evaluations per particle, `[N]`) and, when `save_every > 0`, `stats["path"]`
    `[num_steps // save_every + 1, N, ...]` (x_0 and every `save_every`-th iterate)."""
    if num_steps < 0 or step_size <= 0 or noise < 0:
        raise ValueError(
            f"need num_steps >= 0, step_size > 0, noise >= 0; got {num_steps}, {step_size}, {noise}"
        )

    def step(x, k):
        x = x + step_size * drift(x)
        return x + noise * jax.random.normal(k, x.shape, x.dtype), None

    keys = jax.random.split(key, max(num_steps, 1))[:num_steps]
    stats = {"nfe": jnp.full((x0.shape[0],), num_steps, jnp.int32)}
    if not save_every:
        x, _ = jax.lax.scan(step, x0, keys)
        return x, stats
    if num_steps % save_every:
        raise ValueError(f"save_every={save_every} must divide num_steps={num_steps}")

    def chunk(x, ks):
        x, _ = jax.lax.scan(step, x, ks)
        return x, x

    x, path = jax.lax.scan(chunk, x0, keys.reshape(-1, save_every, *keys.shape[1:]))
    return x, {**stats, "path": jnp.concatenate([x0[None], path])}
