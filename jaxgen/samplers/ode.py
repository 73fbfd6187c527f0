"""ODE solvers for flows dx/dt = f(t, x), entirely inside `jit` (no host round trip).

* `solve_adaptive`: diffrax Dopri5/Tsit5 + PID controller over the whole batch as one state
  (shared step sizes, RMS error norm: the protocol of scipy's `solve_ivp(RK45)` used by VAPO/PFGM).
* `solve_adaptive_per_sample`: the same solver `vmap`-ed, one step-size controller per sample.
* `solve_fixed`: Euler / Heun / RK4 with N equal steps in `lax.scan`.

Every solver returns `(x_T, stats)` with `stats["nfe"]`, the number of vector-field
evaluations (per sample for the per-sample solver).
"""

from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp

VectorField = Callable[[jax.Array, jax.Array], jax.Array]  # f(t, x) -> dx/dt, x: [B, ...]

# (solver, evaluations per attempted step, evaluations outside the steps). Counted with a
# callback inside the vector field; tests/test_samplers_ode.py keeps these numbers honest.
_ADAPTIVE = {
    "dopri5": (diffrax.Dopri5, 6, 1),
    "tsit5": (diffrax.Tsit5, 6, 1),
    "heun": (diffrax.Heun, 2, 0),
}
_FIXED_STAGES = {"euler": 1, "heun": 2, "rk4": 4}
DT_MIN = 1e-9  # `dt_min` of solves inside training steps (a fraction of the interval)


def _check_interval(t0, t1):
    if not t1 > t0:
        raise ValueError(f"the ODE interval must have t1 > t0, got t0={t0}, t1={t1}")


def diffrax_solve(f: VectorField, x0, t0, t1, rtol, atol, solver, max_steps, dt_min=None):
    """The one adaptive `diffrax.diffeqsolve` of the samplers: dx/dt = f(t, x) for a pytree
    `x0` from t0 to t1 with a PID controller, saving only t1, never throwing. Returns
    `(x_t1, stats)`: `nfe` (evaluations of f, from the solver's stages), `num_steps`,
    `num_accepted`, `num_rejected`, `success`."""
    if solver not in _ADAPTIVE:
        raise ValueError(f"unknown adaptive solver {solver!r}; choose one of {sorted(_ADAPTIVE)}")
    _check_interval(t0, t1)
    cls, evals_per_step, evals_extra = _ADAPTIVE[solver]
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, y, args: f(t, y)),
        cls(),
        t0=t0,
        t1=t1,
        dt0=None,
        y0=x0,
        # with `dt_min` (a fraction of the interval), a step below it ends the solve as failed
        # (`success` False): a blown-up field (inf / NaN error) is otherwise retried with ever
        # smaller steps until `max_steps`. Opt-in: diffrax's dtmin path changes the step sizes
        # of a vmapped solve (the per-sample solver would no longer match a solve of one)
        stepsize_controller=diffrax.PIDController(
            rtol=rtol,
            atol=atol,
            dtmin=None if dt_min is None else dt_min * (t1 - t0),
            force_dtmin=False,
        ),
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
        throw=False,
    )
    steps = sol.stats["num_steps"]  # attempted steps (accepted + rejected)
    nfe = evals_per_step * steps + evals_extra
    stats = {
        "nfe": nfe,
        "num_steps": steps,
        "num_accepted": sol.stats["num_accepted_steps"],
        "num_rejected": sol.stats["num_rejected_steps"],
        "success": sol.result == diffrax.RESULTS.successful,
    }
    return jax.tree.map(lambda v: v[0], sol.ys), stats


def solve_adaptive(
    f: VectorField,
    x0,
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    solver: str = "dopri5",
    max_steps: int = 4096,
    dt_min: float | None = None,
):
    """Integrate dx/dt = f(t, x) from t0 to t1 with one step-size controller for the batch.

    Args: `f(t, x)` with x `[B, ...]`; `x0` `[B, ...]`; `dt_min`: end the solve as failed when
    a step falls below this fraction of the interval (e.g. `DT_MIN`; None: never).
    Returns: `(x_T [B, ...], stats)` with scalar `nfe`, `num_steps`, `success`.
    """
    return diffrax_solve(f, x0, t0, t1, rtol, atol, solver, max_steps, dt_min)


def solve_adaptive_per_sample(
    f: VectorField,
    x0,
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    solver: str = "dopri5",
    max_steps: int = 4096,
):
    """Like `solve_adaptive` but each sample has its own step sizes (`vmap` over the batch).

    `f` is called with a batch of one. Returns `(x_T [B, ...], stats)` with `nfe` of shape `[B]`.
    """

    def one(x):
        y, stats = diffrax_solve(f, x[None], t0, t1, rtol, atol, solver, max_steps)
        return y[0], stats

    return jax.vmap(one)(x0)


def _axpy(x, dt, *ks):
    """x + dt·Σ kᵢ over pytrees (a state may be a tuple such as `(x, log p)`)."""
    return jax.tree.map(lambda v, *k: v + dt * sum(k), x, *ks)


def _step(f: VectorField, method: str, t, x, dt):
    if method == "euler":
        return _axpy(x, dt, f(t, x))
    if method == "heun":
        k1 = f(t, x)
        k2 = f(t + dt, _axpy(x, dt, k1))
        return _axpy(x, 0.5 * dt, k1, k2)
    k1 = f(t, x)  # classic RK4
    k2 = f(t + 0.5 * dt, _axpy(x, 0.5 * dt, k1))
    k3 = f(t + 0.5 * dt, _axpy(x, 0.5 * dt, k2))
    k4 = f(t + dt, _axpy(x, dt, k3))
    k23 = jax.tree.map(lambda a, b: 2 * (a + b), k2, k3)
    return _axpy(x, dt / 6.0, k1, k23, k4)


def solve_fixed(
    f: VectorField, x0, *, t0: float = 0.0, t1: float = 1.0, num_steps: int = 100, method="heun"
):
    """Integrate dx/dt = f(t, x) with `num_steps` equal steps of `method` (euler, heun, rk4);
    `x0` may be a pytree (then `f` returns one of the same structure).

    Returns: `(x_T [B, ...], stats)` with `nfe = num_steps * stages`.
    """
    if method not in _FIXED_STAGES:
        raise ValueError(
            f"unknown fixed-step method {method!r}; choose one of {sorted(_FIXED_STAGES)}"
        )
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    _check_interval(t0, t1)
    dt = (t1 - t0) / num_steps

    def body(x, i):
        return _step(f, method, t0 + i * dt, x, dt), None

    x, _ = jax.lax.scan(body, x0, jnp.arange(num_steps, dtype=jnp.float32))
    return x, {"nfe": jnp.asarray(num_steps * _FIXED_STAGES[method])}
