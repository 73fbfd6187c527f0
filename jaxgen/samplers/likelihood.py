"""Exact log-likelihoods of ODE flows by the instantaneous change of variables, inside `jit`.

For a flow dx/dt = v(t, x) that carries x(t0) ~ p0 to x(t1), (docs/methods/shortrun_ebm.md
eq. 1.7; Chen et al. 2018)

    log p_{t1}(x(t1)) = log p0(x(t0)) − ∫_{t0}^{t1} tr ∂v/∂x (t, x(t)) dt.

`flow_log_likelihood` solves the augmented ODE backwards from data x at t1 to x(t0) with diffrax;
the ODE state is the pytree `(x, Δ)` with Δ the accumulated trace integral. For the short-run
EBM's gradient flow v = −∇E the trace term is +∫ tr ∇²E dt (eq. 1.7); for VAPO's v = +∇Φ it is
−∫ tr ∇²Φ dt. The trace is exact (`jax.jacfwd` per example, D forward-mode passes) or Hutchinson's
estimate E[εᵀ(∂v/∂x)ε] with fixed probes ε over the whole solve (FFJORD's choice), Rademacher or
Gaussian, `num_probes` of them averaged; its estimate of log p is unbiased.

Everything is differentiable (diffrax's recursive-checkpoint adjoint), so maximum-likelihood
training of the flow goes through the same function.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.samplers.ode import diffrax_solve, solve_fixed

TRACES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")
ADAPTIVE = ("dopri5", "tsit5")  # solved by `diffrax_solve` (6 evaluations a step, +1)
FIXED = ("euler", "rk4")  # `num_steps` equal steps in lax.scan (cheaper to differentiate)
EXACT_MAX_BYTES = 2**31  # the largest [B, D, D] Jacobian the exact trace builds by default


def standard_normal_log_prob(x) -> jax.Array:
    """log N(x; 0, I) per example: `[B, ...]` -> `[B]`."""
    flat = x.reshape(x.shape[0], -1)
    return -0.5 * jnp.sum(flat**2, axis=1) - 0.5 * flat.shape[1] * jnp.log(2 * jnp.pi)


def _exact_trace(v_one: Callable, t, x) -> jax.Array:
    """tr ∂v/∂x per example `[B]`, `v_one(t, x_i)` maps one example `[...]` to `[...]`."""

    def one(xi):
        jac = jax.jacfwd(lambda z: v_one(t, z.reshape(xi.shape)).reshape(-1))(xi.reshape(-1))
        return jnp.trace(jac)

    return jax.vmap(one)(x)


def _hutchinson_trace(v: Callable, t, x, probes) -> jax.Array:
    """Mean over probes `[M, B, ...]` of εᵀ(∂v/∂x)ε per example `[B]` (forward mode)."""

    def one(eps):
        _, jv = jax.jvp(lambda z: v(t, z), (x,), (eps,))
        return jnp.sum((eps * jv).reshape(x.shape[0], -1), axis=1)

    return jnp.mean(jax.lax.map(one, probes), axis=0)


def draw_probes(key, x, *, num_probes: int, probe: str = "rademacher") -> jax.Array:
    """Hutchinson probes `[num_probes, B, ...]` shaped like `x` `[B, ...]`."""
    shape = (num_probes, *x.shape)
    if probe == "rademacher":
        return jax.random.rademacher(key, shape, jnp.float32)
    return jax.random.normal(key, shape, jnp.float32)


def _check(x, trace, num_probes, probe, exact_max_bytes, t0, t1, key):
    if trace not in TRACES:
        raise ValueError(f"flow_log_likelihood: trace={trace!r}; choose one of {list(TRACES)}")
    if not t1 > t0:
        raise ValueError(f"flow_log_likelihood: need t1 > t0, got t0={t0}, t1={t1}")
    if trace == "hutchinson":
        if (
            isinstance(num_probes, bool)
            or not isinstance(num_probes, int | np.integer)
            or num_probes < 1
        ):
            raise ValueError(
                f"flow_log_likelihood: num_probes must be an int >= 1, got {num_probes!r}"
            )
        if probe not in PROBES:
            raise ValueError(f"flow_log_likelihood: probe={probe!r}; choose one of {PROBES}")
        if key is None:
            raise ValueError(
                "flow_log_likelihood: trace='hutchinson' draws random probes: pass key= (a PRNG "
                "key); only the exact trace needs none"
            )
        return
    b, d = x.shape[0], x[0].size
    need = 4 * b * d * d
    if need > exact_max_bytes:
        raise ValueError(
            f"flow_log_likelihood: the exact trace at D={d} builds a [B, D, D] Jacobian of "
            f"{need / 2**30:.1f} GiB for B={b} (limit {exact_max_bytes / 2**30:.1f} GiB); use "
            f"trace='hutchinson' (num_probes=...), or fewer examples per call"
        )


def _solve_adaptive(field, y0, duration, solver, rtol, atol, max_steps):
    """`solver` on s in [0, duration] (`jaxgen.samplers.ode.diffrax_solve`): `(y, nfe, success)`."""
    y, stats = diffrax_solve(field, y0, 0.0, duration, rtol, atol, solver, max_steps)
    return y, stats["nfe"], stats["success"]


def flow_log_likelihood(
    velocity: Callable,
    x,
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    log_p0: Callable = standard_normal_log_prob,
    trace: str = "exact",
    key=None,
    num_probes: int = 1,
    probe: str = "rademacher",
    solver: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    max_steps: int = 4096,
    num_steps: int = 8,
    exact_max_bytes: int = EXACT_MAX_BYTES,
):
    """log p_{t1}(x) `[B]` of the flow dx/dt = `velocity(t, x)` from x(t0) ~ `log_p0`.

    Args:
      velocity: `v(t, x)`, x `[B, ...]` -> `[B, ...]`, examples independent.
      x: the points `[B, ...]` whose log-density is wanted (the flow's state at t1).
      t0, t1: the flow's time interval (t1 > t0); the solve runs from t1 back to t0.
      log_p0: the initial density, `[B, ...]` -> `[B]` (standard normal by default).
      trace: "exact" (jacfwd per example; refused when the [B, D, D] Jacobian would exceed
        `exact_max_bytes`) or "hutchinson" (`num_probes` fixed `probe` vectors from `key`).
      solver: adaptive ("dopri5", "tsit5": diffrax with a PID controller of `rtol`, `atol`,
        at most `max_steps`) or fixed ("euler", "rk4": `num_steps` equal steps in `lax.scan`).

    Returns:
      `(log_p [B], stats)` with `stats["x0"]` `[B, ...]` (the points mapped back to t0),
      `stats["log_p0"]`, `stats["trace_integral"]` (∫ tr ∂v/∂x dt) `[B]`, `stats["nfe"]`
      (augmented-field evaluations) and `stats["success"]`.
    """
    _check(x, trace, num_probes, probe, exact_max_bytes, t0, t1, key)
    if solver not in (*ADAPTIVE, *FIXED):
        raise ValueError(
            f"flow_log_likelihood: solver={solver!r}; choose one of {[*ADAPTIVE, *FIXED]}"
        )
    probes = draw_probes(key, x, num_probes=num_probes, probe=probe) if trace != "exact" else None
    v_one = lambda t, xi: velocity(t, xi[None])[0]

    def augmented(s, state):  # s = t1 − t runs forward from 0 to t1 − t0
        xs, _ = state
        t = t1 - s
        if trace == "exact":
            tr = _exact_trace(v_one, t, xs)
        else:
            tr = _hutchinson_trace(velocity, t, xs, probes)
        return -velocity(t, xs), tr

    y0 = (x, jnp.zeros((x.shape[0],), jnp.float32))
    if solver in FIXED:
        (x0, integral), st = solve_fixed(
            augmented, y0, t1=t1 - t0, num_steps=num_steps, method=solver
        )
        nfe, success = st["nfe"], jnp.asarray(True)
    else:
        (x0, integral), nfe, success = _solve_adaptive(
            augmented, y0, t1 - t0, solver, rtol, atol, max_steps
        )
    lp0 = log_p0(x0)
    stats = {"x0": x0, "log_p0": lp0, "trace_integral": integral, "nfe": nfe, "success": success}
    return lp0 - integral, stats


def bits_per_dim(log_p, dim: int, *, bins: int = 256, data_range: float = 2.0) -> jax.Array:
    """Bits per dimension of discrete pixels from a continuous density of data scaled to a
    range of width `data_range` (2 for [-1, 1]): the density of the 8-bit data is
    p(x)·(data_range / bins)^D, so bpd = −(log p(x) + D log(data_range / bins)) / (D log 2).
    `log_p` `[B]` (nats, of dequantised data) -> `[B]`."""
    log_bin = jnp.log(data_range / bins)
    return -(log_p + dim * log_bin) / (dim * jnp.log(2.0))
